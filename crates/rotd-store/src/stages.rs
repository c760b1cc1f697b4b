//! Stage-label rules as pure functions over a secret's label map, shared by every engine.

use std::collections::BTreeMap;

use rotd_core::{MAX_STAGES_PER_SECRET, StageLabel, VersionId};

use crate::{Expect, StageMove, StoreError};

pub(crate) type StageMap = BTreeMap<StageLabel, VersionId>;

/// The moves `PutSecretValue` implies for a new version: every listed stage moves to it, and when
/// `ACSCurrent` moves, the old current becomes `ACSPrevious` (the old previous loses its label).
pub(crate) fn put_moves(map: &StageMap, new: &VersionId, stages: &[StageLabel]) -> Vec<StageMove> {
    let mut moves = Vec::new();
    for stage in stages {
        if stage.is_current()
            && let Some(old) = map.get(stage).filter(|old| *old != new)
        {
            moves.push(StageMove {
                stage: StageLabel::previous(),
                expect: Expect::Any,
                to: Some(old.clone()),
            });
        }
        moves.push(StageMove {
            stage: stage.clone(),
            expect: Expect::Any,
            to: Some(new.clone()),
        });
    }
    moves
}

/// Applies moves to a map after checking each expectation. All-or-nothing: on error the map is unchanged.
pub(crate) fn apply(name: &str, map: &mut StageMap, moves: &[StageMove]) -> Result<(), StoreError> {
    let mut next = map.clone();
    for m in moves {
        let actual = next.get(&m.stage);
        let ok = match (&m.expect, actual) {
            (Expect::Any, _) | (Expect::Absent, None) => true,
            (Expect::At(want), Some(have)) => want == have,
            _ => false,
        };
        if !ok {
            return Err(StoreError::StageConflict {
                name: name.to_owned(),
                stage: m.stage.to_string(),
                expected: match &m.expect {
                    Expect::Any => "any".into(),
                    Expect::Absent => "no version".into(),
                    Expect::At(v) => format!("version {v}"),
                },
                actual: actual.map_or_else(|| "no version".into(), |v| format!("version {v}")),
            });
        }
        match &m.to {
            Some(v) => {
                next.insert(m.stage.clone(), v.clone());
            }
            None => {
                next.remove(&m.stage);
            }
        }
    }
    if next.len() > MAX_STAGES_PER_SECRET {
        return Err(StoreError::LimitExceeded(format!(
            "secret {name} would have {} stage labels; the limit is {MAX_STAGES_PER_SECRET}",
            next.len()
        )));
    }
    *map = next;
    Ok(())
}

/// The vendor's `UpdateSecretVersionStage` as moves. Moving `ACSCurrent` also moves `ACSPrevious` to the
/// version that was current, as a put does, so the two built-in labels never point at the same version
/// by accident.
pub(crate) fn update_stage_moves(
    map: &StageMap,
    stage: &StageLabel,
    remove_from: Option<&VersionId>,
    move_to: Option<&VersionId>,
) -> Result<Vec<StageMove>, StoreError> {
    let invalid = |reason: &str| {
        StoreError::Invalid(rotd_core::ValidationError {
            what: "version stage",
            reason: reason.into(),
        })
    };
    if remove_from.is_none() && move_to.is_none() {
        return Err(invalid("give RemoveFromVersion, MoveToVersion or both"));
    }
    if stage.is_builtin() && move_to.is_none() {
        return Err(invalid(
            "ACSCurrent and ACSPrevious can only be moved; give MoveToVersion",
        ));
    }
    let expect = remove_from.map_or(Expect::Any, |v| Expect::At(v.clone()));
    let mut moves = Vec::new();
    if stage.is_current()
        && let (Some(old), Some(new)) = (map.get(stage), move_to)
        && old != new
    {
        moves.push(StageMove {
            stage: StageLabel::previous(),
            expect: Expect::Any,
            to: Some(old.clone()),
        });
    }
    moves.push(StageMove {
        stage: stage.clone(),
        expect,
        to: move_to.cloned(),
    });
    Ok(moves)
}
