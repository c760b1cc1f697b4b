//! The shell scripts rotd runs on a managed host, as root (directly or through sudo). Their arguments
//! are names and paths only (`$1` the managed user, `$2` the authorized_keys path, `$3` an expected
//! checksum); passwords and keys reach them on stdin, after `rotd-ready`, never in argv. POSIX sh with
//! coreutils; each failure is a distinct exit code the backend maps to an error.
//!
//! Exit codes: 10 not root, 11 no such user, 12 a tool is missing, 20 the authorized_keys path is
//! unsafe (a symbolic link, not a regular file, a directory others can write), 21 the file changed
//! between rotd's read and its write.

/// Shared helpers: find the user, and resolve and vet the authorized_keys path.
///
/// `keys_path` sets `dir` (the physical directory), `base` (the file name) and `inhome`, and checks
/// what sshd's StrictModes would: no symbolic link on the way below the home directory (a user could
/// otherwise point `~/.ssh` at root's), the directory owned by the user or root and not writable by
/// group or others. Inside the home directory the file is read as the user, so a link swapped in
/// after the check cannot make root read another file.
const PRELUDE: &str = r#"set -u
printf 'rotd-ready\n'
fail() { code=$1; shift; printf '%s\n' "$*" >&2; exit "$code"; }
ent=$(getent passwd "$1" 2>/dev/null || awk -F: -v u="$1" '$1 == u' /etc/passwd)
[ -n "$ent" ] || fail 11 "user $1 does not exist on this host"
home=$(printf '%s\n' "$ent" | cut -d: -f6)
uid=$(printf '%s\n' "$ent" | cut -d: -f3)
gid=$(printf '%s\n' "$ent" | cut -d: -f4)
me=$(id -u)
[ "$me" = 0 ] || [ "$me" = "$uid" ] || fail 10 "the management login runs as uid $me, not root (set ecs.sudo)"
as_user() { u=$1; shift; if [ "$me" = 0 ] && [ "$uid" != 0 ]; then runuser -u "$u" -- "$@"; else "$@"; fi; }
keys_path() {
  case $2 in
    /*) want=${2%/*}; inhome=0 ;;
    *) hp=$(cd -P -- "$home" 2>/dev/null && pwd) || fail 20 "the home directory $home of $1 is missing"
       rel=${2%/*}; [ "$rel" = "$2" ] && rel=""
       want=$hp${rel:+/$rel}; inhome=1 ;;
  esac
  [ -n "$want" ] || want=/
  base=${2##*/}
  if [ ! -e "$want" ] && [ "$inhome" = 1 ]; then
    case ${3:-} in
      create) as_user "$1" mkdir -p -m 700 -- "$want" || fail 20 "cannot create $want" ;;
      read) printf 'missing\n'; exit 0 ;;
    esac
  fi
  dir=$(cd -P -- "$want" 2>/dev/null && pwd) || fail 20 "the directory $want does not exist"
  [ "$dir" = "$want" ] || fail 20 "$want is reached through a symbolic link ($dir); rotd does not follow links there"
  set -- $(stat -c '%u %a' -- "$dir") || fail 20 "cannot stat $dir"
  [ "$1" = 0 ] || [ "$1" = "$uid" ] || fail 20 "$dir is owned by uid $1, neither the user nor root"
  case $2 in *[2367][0-7]|*[2367]) fail 20 "$dir is writable by group or others (mode $2)";; esac
  cd -P -- "$dir" || fail 20 "cannot enter $dir"
  if [ -L "$base" ]; then fail 20 "$dir/$base is a symbolic link; rotd does not follow it"; fi
  if [ -e "$base" ] && [ ! -f "$base" ]; then fail 20 "$dir/$base is not a regular file"; fi
}
read_keys() { if [ "$inhome" = 1 ]; then as_user "$1" cat -- "$base"; else cat -- "$base"; fi; }
"#;

fn with_prelude(body: &str) -> String {
    format!("{PRELUDE}{body}")
}

/// `rotd check`: root (or sudo) works, the user exists, the tools are there. `$2` is the mode
/// (`password` or `key`), `$3` the authorized_keys path. Prints `sudo` when it ran through sudo.
pub(crate) fn check() -> String {
    with_prelude(
        r#"if [ "$2" = password ]; then
  command -v chpasswd >/dev/null 2>&1 || fail 12 "chpasswd is not installed"
else
  command -v runuser >/dev/null 2>&1 || [ "$uid" = 0 ] || [ "$me" != 0 ] || fail 12 "runuser (util-linux) is not installed"
  command -v sha256sum >/dev/null 2>&1 || fail 12 "sha256sum (coreutils) is not installed"
  command -v mktemp >/dev/null 2>&1 || fail 12 "mktemp is not installed"
  keys_path "$1" "$3" read
fi
printf 'ok\n'
"#,
    )
}

/// Sets the password of `$1` to what stdin gives (`user:password\n`), with chpasswd.
pub(crate) fn set_password() -> String {
    with_prelude(
        r#"command -v chpasswd >/dev/null 2>&1 || fail 12 "chpasswd is not installed"
exec chpasswd
"#,
    )
}

/// Checks the password on stdin (NUL-terminated) for `$1` with pam_unix's own helper, for hosts whose
/// sshd refuses password logins. Exit 0: the password is right.
pub(crate) fn check_password() -> String {
    with_prelude(
        r#"for c in /usr/sbin/unix_chkpwd /sbin/unix_chkpwd /usr/lib/x86_64-linux-gnu/unix_chkpwd; do
  if [ -x "$c" ]; then exec "$c" "$1" nonull; fi
done
fail 12 "unix_chkpwd (pam_unix) is not installed"
"#,
    )
}

/// Prints `missing`, or `present` and the file: the authorized_keys of `$1` at `$2`.
pub(crate) fn read_keys() -> String {
    with_prelude(
        r#"keys_path "$1" "$2" read
if [ -e "$base" ]; then printf 'present\n'; read_keys "$1"; else printf 'missing\n'; fi
"#,
    )
}

/// Replaces the authorized_keys of `$1` at `$2` with stdin, if its SHA-256 is still `$3` (or it is still
/// missing when `$3` is `missing`): a temp file in the same directory, the old file's owner and mode
/// (the user's and 0600 for a new file), then one rename.
pub(crate) fn write_keys() -> String {
    with_prelude(
        r#"keys_path "$1" "$2" create
if [ -e "$base" ]; then now=$(read_keys "$1" | sha256sum | cut -c1-64); else now=missing; fi
[ "$now" = "$3" ] || fail 21 "$dir/$base changed while rotd was editing it"
t=$(mktemp "$dir/.rotd-keys.XXXXXX") || fail 20 "cannot create a temp file in $dir"
trap 'rm -f -- "$t"' EXIT
cat > "$t" || fail 20 "cannot write $t"
if [ "$now" = missing ]; then own=$uid:$gid; mode=600; else
  own=$(stat -c '%u:%g' -- "$base"); mode=$(stat -c '%a' -- "$base"); fi
if [ "$me" = 0 ]; then chown -- "$own" "$t" || fail 20 "cannot chown $t"; fi
chmod -- "$mode" "$t" || fail 20 "cannot chmod $t"
mv -f -- "$t" "$base" || fail 20 "cannot replace $dir/$base"
trap - EXIT
printf 'written\n'
"#,
    )
}

/// Whether sudo needs a password here: exit 0 when `sudo -n true` works.
pub(crate) fn sudo_probe() -> &'static str {
    "sudo -n true"
}
