//! The command line, as clap derive types. Help texts are written for someone who has never seen rotd.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rotd",
    version,
    about = "Self-hosted secrets manager and credential-rotation daemon",
    long_about = "rotd stores secrets as encrypted, versioned values (ACSCurrent, ACSPrevious), rotates the \
credentials behind them on a schedule, and serves them through an API compatible with Alibaba Cloud KMS \
Secrets Manager.\n\nStart with `rotd init`, declare secrets in one TOML file each under secrets.d/, check them \
with `rotd check`, then run `rotd serve` (usually through systemd).",
    after_help = "Every command reads the daemon's rotd.toml (-c/--config, $ROTD_CONFIG, or /etc/rotd/rotd.toml). \
Secret values are never taken from the command line: use --value-file or --value-stdin."
)]
pub struct Cli {
    /// Path to the daemon's rotd.toml; relative paths inside it resolve against its directory.
    #[arg(
        short,
        long,
        global = true,
        env = "ROTD_CONFIG",
        default_value = "/etc/rotd/rotd.toml"
    )]
    pub config: PathBuf,

    /// Output format for commands that print data.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the data directory, the master-key keyring, the store and a first admin access key.
    ///
    /// Safe to run again: it creates only what is missing and never replaces an existing keyring.
    Init {
        /// When rotd.toml reads the keyring from a systemd credential, write a new keyring to this file
        /// (the one `LoadCredential=` points at) instead.
        #[arg(long, value_name = "PATH")]
        keyring_file: Option<PathBuf>,
    },
    /// Validate rotd.toml and every file in the secrets directory; print every error with file:line:col.
    ///
    /// Exits 0 when everything is valid and 64 when anything is not. With `--secrets-dir` it checks
    /// a candidate directory against rotd.toml instead of the configured one, so a new set of files can
    /// be checked before it is moved into place and the daemon reloaded (SIGHUP reloads the secrets
    /// directory; rotd.toml itself is read only at start).
    Check {
        #[arg(long, value_name = "DIR")]
        secrets_dir: Option<PathBuf>,
    },
    /// Run the daemon: load the configuration, open the store, create or update declared secrets, and run
    /// until SIGTERM or SIGINT. SIGHUP reloads the secrets directory.
    Serve,
    /// Create, read, list, version, stage, delete and restore secrets.
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Manage master keys (CMKs): list them, add a new version, re-wrap data keys under the newest one.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Rotate a secret now (through the running daemon) and show each step as it happens.
    ///
    /// At most 50 rotations per secret per hour, as the vendor allows.
    Rotate {
        name: String,
        /// The new version's id. If a version with this id exists, nothing is rotated (idempotent retry).
        #[arg(long)]
        version_id: Option<String>,
        /// Queue the rotation and return without waiting for it.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for the rotation to finish, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Dry run: check every backend's admin connection and privileges and print when each secret
    /// rotates next and what it would do. Changes nothing.
    Plan,
    /// Show every secret's rotation state: last and next rotation, failures, quarantine, pause.
    Status,
    /// Pause or resume automatic rotation of a secret; resume also lifts a quarantine.
    #[command(subcommand)]
    Rotation(RotationCmd),
    /// Manage API access keys (the AccessKeyId/AccessKeySecret pairs applications sign requests with).
    #[command(subcommand, name = "access-key")]
    AccessKey(AccessKeyCmd),
    /// Manage the API's TLS certificate (issued by rotd's own CA, `<data_dir>/tls/ca.pem`).
    #[command(subcommand)]
    Tls(TlsCmd),
    /// Read the API audit log (one JSON object per request; never a secret value).
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Back up and restore the store (the SQLite database; the keyring is a separate file).
    #[command(subcommand)]
    Store(StoreCmd),
    /// Write the man pages (one per command) and the shell completions (bash, zsh, fish) into DIR's
    /// `man/` and `completions/`, for packaging.
    #[command(hide = true)]
    GenerateDocs {
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Write an online, consistent copy of the store to FILE (a new file, mode 0600), also while the
    /// daemon runs. Values stay encrypted in it; the keyring is NOT in it: back that up separately.
    Backup { file: PathBuf },
    /// Replace the store with a backup made by `rotd store backup`. The daemon must be stopped. The
    /// backup is checked first (integrity, and every version decrypts with the current keyring); the
    /// store it replaces is kept beside it as `<db>.before-restore-<time>`.
    Restore { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum AccessKeyCmd {
    /// Create an access key. Its secret is shown once (or written to --secret-file, mode 0600).
    Create {
        #[arg(long, default_value = "")]
        description: String,
        /// Allowed actions, e.g. kms:GetSecretValue or kms:* (repeat for several). Default, when neither
        /// --action nor --policy is given: kms:GetSecretValue.
        #[arg(long = "action")]
        actions: Vec<String>,
        /// A policy preset named as the vendor names it: AliyunKMSSecretUserAccess (the read actions on
        /// secrets) or AliyunKMSCryptoUserAccess (adds nothing: rotd's reads include their decryption).
        /// Repeat for several; combines with --action.
        #[arg(long = "policy", value_name = "NAME")]
        policies: Vec<String>,
        /// Allowed secret name patterns, e.g. app/* or * (repeat for several).
        #[arg(long = "secret", default_value = "*")]
        secrets: Vec<String>,
        /// Write {"AccessKeyId","AccessKeySecret"} to this new file (mode 0600) instead of printing it.
        #[arg(long, value_name = "PATH")]
        secret_file: Option<PathBuf>,
    },
    /// List access keys (never their secrets).
    List,
    /// Disable an access key: requests signed with it are refused until it is enabled again.
    Disable { id: String },
    /// Enable a disabled access key.
    Enable { id: String },
    /// Delete an access key for good.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TlsCmd {
    /// Issue a new server certificate from rotd's CA with the names in rotd.toml `[api] tls_names`, then
    /// reload a running daemon with SIGHUP. Clients keep trusting the same ca.pem.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Print the last N audit records.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum RotationCmd {
    /// Stop automatic rotation of a secret until it is resumed (manual `rotd rotate` still works).
    Pause { name: String },
    /// Resume automatic rotation, lifting a quarantine and forgetting past failures.
    Resume { name: String },
    /// Show a secret's rotation journal, oldest first.
    History { name: String },
    /// End a secret's open rotation that cannot finish (its value is kept as an unlabelled version and
    /// the next rotation plans afresh). Refused for a single-account rotation past `applied`, whose
    /// server already has the new password. Needs the running daemon.
    Abandon { name: String },
}

/// Where a new secret value comes from. Values are never accepted as arguments: they would be visible
/// in the process list and the shell history.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ValueSource {
    /// Read the value from this file (byte for byte; a single trailing newline is kept).
    #[arg(long, value_name = "PATH")]
    pub value_file: Option<PathBuf>,
    /// Read the value from standard input.
    #[arg(long)]
    pub value_stdin: bool,
    /// Generate a random 32-character password from [A-Za-z0-9_-].
    #[arg(long)]
    pub generate: bool,
}

#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Create a secret with its first version, which becomes ACSCurrent.
    Create {
        name: String,
        #[command(flatten)]
        value: ValueSource,
        /// Secret type: Generic, Rds, PolarDB, Redis, ECS or RAMCredentials.
        #[arg(long = "type", default_value = "Generic")]
        kind: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A tag as KEY=VALUE; repeat for several.
        #[arg(long = "tag", value_name = "KEY=VALUE")]
        tags: Vec<String>,
        /// The first version's id (default: v1, as the vendor's console defaults "Initial version").
        #[arg(long)]
        version_id: Option<String>,
        /// Store the value as binary instead of UTF-8 text.
        #[arg(long)]
        binary: bool,
        /// The CMK that protects this secret (default: the daemon's default_cmk).
        #[arg(long)]
        cmk: Option<String>,
    },
    /// Store a new version. By default it becomes ACSCurrent and the old current becomes ACSPrevious.
    Put {
        name: String,
        #[command(flatten)]
        value: ValueSource,
        /// The version's id (default: random). Repeating an id with the same value changes nothing.
        #[arg(long)]
        version_id: Option<String>,
        /// Give the version these stage labels instead of ACSCurrent; repeat for several.
        #[arg(long = "stage")]
        stages: Vec<String>,
        #[arg(long)]
        binary: bool,
    },
    /// Show a version's metadata; with --reveal, print its value.
    Get {
        name: String,
        /// Read the version with this stage label (default ACSCurrent).
        #[arg(long)]
        stage: Option<String>,
        /// Read this version id; with --stage too, both must name the same version.
        #[arg(long)]
        version_id: Option<String>,
        /// Print the secret value. Binary values are printed base64-encoded.
        #[arg(long)]
        reveal: bool,
    },
    /// Show a secret's metadata (type, tags, rotation, deletion state).
    Describe { name: String },
    /// List all secrets.
    List,
    /// List a secret's versions with their stage labels, oldest first.
    Versions { name: String },
    /// Move or remove a stage label (the vendor's UpdateSecretVersionStage).
    ///
    /// Moving ACSCurrent also moves ACSPrevious to the version that was current.
    Stage {
        name: String,
        stage: String,
        /// The version that should carry the label.
        #[arg(long)]
        move_to: Option<String>,
        /// The version that carries it now (required to remove a custom label).
        #[arg(long)]
        remove_from: Option<String>,
    },
    /// Schedule a secret for deletion after a recovery window, or delete it now with --force.
    Delete {
        name: String,
        /// Days before the secret is deleted for good (7 to 30).
        #[arg(long, default_value_t = 30, conflicts_with = "force")]
        recovery_days: u32,
        /// Delete now, with every version. This cannot be undone.
        #[arg(long)]
        force: bool,
    },
    /// Cancel a scheduled deletion.
    Restore { name: String },
    /// Write one secret file per instance from a template (the vendor's "Create bulk secrets").
    ///
    /// The template is a secret file whose string values hold `{field}` placeholders; the instances file
    /// is TOML (`[[instance]]` tables) or CSV (a header row of field names), and each instance's
    /// `instance` field names its file, `<out-dir>/<instance>.toml`. Every file is validated as `rotd
    /// check` validates the secrets directory (names unique across the instances and the files already
    /// there) before any is written; if anything is wrong, nothing is written and the exit status is 64.
    /// Existing files are never overwritten. Formats: config/README.md, "Bulk secrets". Needs no store.
    CreateBulk {
        /// The template: a secret file with `{field}` placeholders in its string values.
        #[arg(long, value_name = "FILE")]
        template: PathBuf,
        /// The instances: a .toml file of `[[instance]]` tables or a .csv file with a header row.
        #[arg(long, value_name = "FILE")]
        instances: PathBuf,
        /// Where to write the files (default: the secrets directory of rotd.toml).
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Validate everything and print what would be written, but write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// List CMK versions and how many data keys each one wraps.
    List,
    /// Add a new version to a CMK (new values use it; old versions still decrypt).
    Rotate {
        /// The CMK to rotate (default: the daemon's default_cmk).
        #[arg(long)]
        cmk: Option<String>,
    },
    /// Re-wrap every data key under the newest version of its CMK.
    Rewrap,
}
