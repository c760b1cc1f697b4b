//! The rotation protocol as types: journal steps with their details, and operator request kinds and
//! outcomes. The engine writes them, the CLI and the API read them back; none of them compares strings.
//!
//! Stored as before (a `step` text column and a `detail` JSON object, a request `kind` and a `result`
//! text), so no row changes meaning. Decoding is strict: a step or request kind rotd does not know, or a
//! detail without a field its step needs, is a [`StoreError::Corrupt`] naming the entry, never a silent
//! `None` (which would skip a retire or restart a rotation). The engine quarantines a secret whose journal
//! it cannot read, with that message.

use std::fmt;

use rotd_core::{Slot, VersionId};
use serde_json::{Map, Value, json};

use crate::StoreError;

/// One step of a rotation, with what the engine needs to resume from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A new incarnation of the secret name (written by `create_secret`): the engine's tail starts here.
    Created,
    /// A credential the backend mints is about to be created (the intent, journaled first).
    Minting(Planned),
    /// A new value is planned; it is stored as `ACSPending` before the target is touched.
    Pending(Planned),
    Applied {
        slot: Slot,
    },
    Verified {
        slot: Slot,
    },
    /// `ACSCurrent` moved to the new version; what `retire` needs, if the backend retires.
    Promoted {
        slot: Slot,
        retire: Option<RetirePlan>,
    },
    /// Step `step` (1-based) of revoking the old credential of a promoted rotation is done.
    Retired {
        slot: Slot,
        step: u8,
    },
    /// The rotation was ended without promotion (`ACSCurrent` moved meanwhile, or an operator ended it).
    Abandoned {
        slot: Slot,
        after: StepKind,
        reason: String,
    },
    /// An annotation: an attempt failed and will be retried.
    Failed(Failure),
    /// An annotation: an attempt failed and the secret was quarantined.
    Quarantined(Failure),
}

/// What a rotation was planned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub slot: Slot,
    /// The version `ACSCurrent` pointed at when the rotation was planned (`Some(None)`: none), which
    /// promotion expects exactly. `None` for entries written by a rotd that did not record it.
    pub started_from: Option<Option<VersionId>>,
}

/// The old credential a promotion left to revoke, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetirePlan {
    pub version: VersionId,
    pub slot: Slot,
    /// Unix seconds.
    pub at: i64,
}

/// A failed attempt, as journaled. The message never contains secret material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub failed_step: String,
    pub permanent: bool,
    pub attempt: u32,
    pub error: String,
}

/// The name of a step, as stored in the journal's `step` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    Created,
    Minting,
    Pending,
    Applied,
    Verified,
    Promoted,
    Retired,
    Abandoned,
    Failed,
    Quarantined,
}

impl StepKind {
    const ALL: [StepKind; 10] = [
        StepKind::Created,
        StepKind::Minting,
        StepKind::Pending,
        StepKind::Applied,
        StepKind::Verified,
        StepKind::Promoted,
        StepKind::Retired,
        StepKind::Abandoned,
        StepKind::Failed,
        StepKind::Quarantined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Created => "created",
            StepKind::Minting => "minting",
            StepKind::Pending => "pending",
            StepKind::Applied => "applied",
            StepKind::Verified => "verified",
            StepKind::Promoted => "promoted",
            StepKind::Retired => "retired",
            StepKind::Abandoned => "abandoned",
            StepKind::Failed => "failed",
            StepKind::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<StepKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Steps that advance or end a rotation (all but the failure annotations).
    pub fn is_progress(self) -> bool {
        !matches!(self, StepKind::Failed | StepKind::Quarantined)
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Step {
    pub fn kind(&self) -> StepKind {
        match self {
            Step::Created => StepKind::Created,
            Step::Minting(_) => StepKind::Minting,
            Step::Pending(_) => StepKind::Pending,
            Step::Applied { .. } => StepKind::Applied,
            Step::Verified { .. } => StepKind::Verified,
            Step::Promoted { .. } => StepKind::Promoted,
            Step::Retired { .. } => StepKind::Retired,
            Step::Abandoned { .. } => StepKind::Abandoned,
            Step::Failed(_) => StepKind::Failed,
            Step::Quarantined(_) => StepKind::Quarantined,
        }
    }

    /// The account slot the step concerns, if it names one.
    pub fn slot(&self) -> Option<Slot> {
        match self {
            Step::Minting(p) | Step::Pending(p) => Some(p.slot),
            Step::Applied { slot }
            | Step::Verified { slot }
            | Step::Promoted { slot, .. }
            | Step::Retired { slot, .. }
            | Step::Abandoned { slot, .. } => Some(*slot),
            Step::Created | Step::Failed(_) | Step::Quarantined(_) => None,
        }
    }

    /// The `detail` JSON object, exactly as rotd has always stored it.
    pub fn detail(&self) -> Value {
        match self {
            Step::Created => json!({}),
            Step::Minting(p) | Step::Pending(p) => {
                let mut d = json!({"slot": p.slot.as_str()});
                if let Some(started) = &p.started_from {
                    d["current"] = started.as_ref().map_or(Value::Null, |v| json!(v.as_str()));
                }
                d
            }
            Step::Applied { slot } | Step::Verified { slot } => json!({"slot": slot.as_str()}),
            Step::Retired { slot, step } => json!({"slot": slot.as_str(), "step": step}),
            Step::Promoted { slot, retire } => {
                let mut d = json!({"slot": slot.as_str()});
                if let Some(r) = retire {
                    d["retire_version"] = json!(r.version.as_str());
                    d["retire_slot"] = json!(r.slot.as_str());
                    d["retire_at"] = json!(r.at);
                }
                d
            }
            Step::Abandoned { slot, after, reason } => {
                json!({"slot": slot.as_str(), "after": after.as_str(), "reason": reason})
            }
            Step::Failed(f) | Step::Quarantined(f) => json!({
                "failed_step": f.failed_step,
                "class": if f.permanent { "permanent" } else { "retryable" },
                "attempt": f.attempt,
                "error": f.error,
            }),
        }
    }

    /// Reads a stored step back. `Err` says what is wrong, for a [`StoreError::Corrupt`].
    pub fn decode(step: &str, detail: &Value) -> Result<Step, String> {
        let kind = StepKind::parse(step).ok_or_else(|| format!("unknown step {step:?}"))?;
        let d = detail
            .as_object()
            .ok_or_else(|| format!("{step}: the detail is not a JSON object"))?;
        let slot = || slot_field(d, "slot").map_err(|e| format!("{step}: {e}"));
        Ok(match kind {
            StepKind::Created => Step::Created,
            StepKind::Minting | StepKind::Pending => {
                let started_from = match d.get("current") {
                    None => None,
                    Some(Value::Null) => Some(None),
                    Some(Value::String(v)) => Some(Some(
                        VersionId::parse(v.clone()).map_err(|e| format!("{step}: current: {e}"))?,
                    )),
                    Some(_) => return Err(format!("{step}: current is not a version id")),
                };
                let p = Planned {
                    slot: slot()?,
                    started_from,
                };
                if kind == StepKind::Minting {
                    Step::Minting(p)
                } else {
                    Step::Pending(p)
                }
            }
            StepKind::Applied => Step::Applied { slot: slot()? },
            StepKind::Verified => Step::Verified { slot: slot()? },
            // Entries from before multi-step retirement have no step: they were the only one.
            StepKind::Retired => Step::Retired {
                slot: slot()?,
                step: match d.get("step") {
                    None => 1,
                    Some(v) => v
                        .as_u64()
                        .and_then(|n| u8::try_from(n).ok())
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| format!("{step}: step is not a number from 1"))?,
                },
            },
            StepKind::Promoted => {
                let retire = match d.get("retire_version") {
                    None => None,
                    Some(_) => Some(RetirePlan {
                        version: VersionId::parse(
                            str_field(d, "retire_version").map_err(|e| format!("{step}: {e}"))?,
                        )
                        .map_err(|e| format!("{step}: retire_version: {e}"))?,
                        slot: slot_field(d, "retire_slot").map_err(|e| format!("{step}: {e}"))?,
                        at: d
                            .get("retire_at")
                            .and_then(Value::as_i64)
                            .ok_or_else(|| format!("{step}: retire_at is missing or not a number"))?,
                    }),
                };
                Step::Promoted {
                    slot: slot()?,
                    retire,
                }
            }
            StepKind::Abandoned => Step::Abandoned {
                slot: slot()?,
                after: StepKind::parse(&str_field(d, "after").map_err(|e| format!("{step}: {e}"))?)
                    .ok_or_else(|| format!("{step}: after names no step"))?,
                reason: str_field(d, "reason").map_err(|e| format!("{step}: {e}"))?,
            },
            StepKind::Failed | StepKind::Quarantined => {
                let f = Failure {
                    failed_step: str_field(d, "failed_step").map_err(|e| format!("{step}: {e}"))?,
                    permanent: match str_field(d, "class")
                        .map_err(|e| format!("{step}: {e}"))?
                        .as_str()
                    {
                        "permanent" => true,
                        "retryable" => false,
                        other => return Err(format!("{step}: unknown class {other:?}")),
                    },
                    attempt: d
                        .get("attempt")
                        .and_then(Value::as_u64)
                        .and_then(|a| u32::try_from(a).ok())
                        .ok_or_else(|| format!("{step}: attempt is missing or not a number"))?,
                    error: str_field(d, "error").map_err(|e| format!("{step}: {e}"))?,
                };
                if kind == StepKind::Failed {
                    Step::Failed(f)
                } else {
                    Step::Quarantined(f)
                }
            }
        })
    }
}

fn str_field(d: &Map<String, Value>, key: &str) -> Result<String, String> {
    d.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("{key} is missing or not text"))
}

fn slot_field(d: &Map<String, Value>, key: &str) -> Result<Slot, String> {
    let s = str_field(d, key)?;
    Slot::parse(&s).ok_or_else(|| format!("{key} {s:?} is not an account slot"))
}

/// What an operator (CLI) or a client (API) asks the daemon to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// Rotate now (optionally to a named version).
    Rotate,
    /// Re-read the control state after `rotd rotation resume`.
    Resume,
    /// Re-read the control state after a pause or another change.
    Refresh,
    /// End the open rotation (`rotd rotation abandon`).
    Abandon,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Rotate => "rotate",
            RequestKind::Resume => "resume",
            RequestKind::Refresh => "refresh",
            RequestKind::Abandon => "abandon",
        }
    }

    pub fn parse(s: &str) -> Option<RequestKind> {
        [
            RequestKind::Rotate,
            RequestKind::Resume,
            RequestKind::Refresh,
            RequestKind::Abandon,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the daemon answered a request. Stored as `ok: …`, `error: …` or `quarantined: …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    Ok(String),
    Error(String),
    Quarantined(String),
}

impl RequestOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, RequestOutcome::Ok(_))
    }

    /// The message without its prefix.
    pub fn message(&self) -> &str {
        match self {
            RequestOutcome::Ok(m) | RequestOutcome::Error(m) | RequestOutcome::Quarantined(m) => m,
        }
    }

    pub fn parse(s: &str) -> Option<RequestOutcome> {
        let (kind, message) = s.split_once(':').map_or((s, ""), |(k, m)| (k, m.trim_start()));
        let message = message.to_owned();
        match kind {
            "ok" => Some(RequestOutcome::Ok(message)),
            "error" => Some(RequestOutcome::Error(message)),
            "quarantined" => Some(RequestOutcome::Quarantined(message)),
            _ => None,
        }
    }
}

impl fmt::Display for RequestOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, m) = match self {
            RequestOutcome::Ok(m) => ("ok", m),
            RequestOutcome::Error(m) => ("error", m),
            RequestOutcome::Quarantined(m) => ("quarantined", m),
        };
        if m.is_empty() {
            f.write_str(kind)
        } else {
            write!(f, "{kind}: {m}")
        }
    }
}

/// A corrupt journal entry, named so an operator can find it.
pub(crate) fn corrupt_entry(name: &str, id: i64, what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "journal entry {id} of secret {name} cannot be read ({what}); rotd will not guess what that step did, so the secret stays quarantined until the entry is repaired (a bug or a manual edit of the store: please report it)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_through_its_stored_form() {
        let v = |s: &str| VersionId::parse(s).expect("id");
        let f = Failure {
            failed_step: "applied".into(),
            permanent: true,
            attempt: 3,
            error: "mysql apply: access denied".into(),
        };
        let steps = [
            Step::Created,
            Step::Minting(Planned {
                slot: Slot::Single,
                started_from: Some(None),
            }),
            Step::Pending(Planned {
                slot: Slot::Clone,
                started_from: Some(Some(v("v1"))),
            }),
            Step::Pending(Planned {
                slot: Slot::Primary,
                started_from: None,
            }),
            Step::Applied { slot: Slot::Clone },
            Step::Verified { slot: Slot::Clone },
            Step::Promoted {
                slot: Slot::Clone,
                retire: Some(RetirePlan {
                    version: v("v1"),
                    slot: Slot::Primary,
                    at: 1_700_000_000,
                }),
            },
            Step::Promoted {
                slot: Slot::Single,
                retire: None,
            },
            Step::Retired {
                slot: Slot::Primary,
                step: 2,
            },
            Step::Abandoned {
                slot: Slot::Clone,
                after: StepKind::Applied,
                reason: "ACSCurrent moved".into(),
            },
            Step::Failed(f.clone()),
            Step::Quarantined(f),
        ];
        for s in steps {
            let back = Step::decode(s.kind().as_str(), &s.detail()).expect("decodes");
            assert_eq!(back, s);
        }
    }

    #[test]
    fn stored_forms_of_earlier_releases_still_decode() {
        let p = Step::decode("pending", &json!({"slot": "clone"})).expect("legacy pending");
        assert_eq!(
            p,
            Step::Pending(Planned {
                slot: Slot::Clone,
                started_from: None
            })
        );
        let pr =
            Step::decode("promoted", &json!({"slot": "single", "extra": 1})).expect("extra keys are fine");
        assert_eq!(pr.slot(), Some(Slot::Single));
    }

    #[test]
    fn malformed_entries_are_errors_not_none() {
        for (step, detail) in [
            ("pending", json!({})),
            ("pending", json!({"slot": "sideways"})),
            ("promoted", json!({"slot": "clone", "retire_version": "v1"})),
            (
                "failed",
                json!({"failed_step": "x", "class": "maybe", "attempt": 1, "error": ""}),
            ),
            ("teleported", json!({})),
            ("applied", json!("slot")),
        ] {
            let e = Step::decode(step, &detail).expect_err("malformed");
            assert!(!e.is_empty());
        }
    }

    #[test]
    fn request_outcomes_round_trip() {
        for o in [
            RequestOutcome::Ok("version v2".into()),
            RequestOutcome::Ok(String::new()),
            RequestOutcome::Error("secret x has no open rotation".into()),
            RequestOutcome::Quarantined("apply: denied".into()),
        ] {
            assert_eq!(RequestOutcome::parse(&o.to_string()), Some(o));
        }
        assert_eq!(RequestOutcome::parse("maybe: later"), None);
    }
}
