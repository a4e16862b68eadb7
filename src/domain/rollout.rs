//! Staged rollouts: the plan (waves, health gate), which devices a wave covers, and what the
//! figures of a wave decide. Pure; the service feeds it counts and applies the decision.

use super::policy::{PolicyContent, PolicyNode};
use super::{DraftId, FieldError, OperatorId, PolicyId, RolloutId, TenantId};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Devices are placed on a scale of this many buckets; a wave of p % covers the lowest p·100.
pub const BUCKETS: u32 = 10_000;
pub const MAX_WAVES: usize = 10;
pub const MAX_HOLD_PULL_CYCLES: u32 = 100;
pub const MAX_MIN_REPORTS: u32 = 1_000_000;

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    /// Advancing wave by wave.
    Running,
    /// Held at its wave by an operator; the wave keeps the new version.
    Paused,
    /// Every device got the new version, which is now the policy's current version.
    Completed,
    /// The health gate failed: every device is served the previous version again.
    RolledBack,
    /// Stopped by an operator: every device is served the previous version again.
    Aborted,
}

impl RolloutState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::RolledBack => "rolled_back",
            Self::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Running,
            Self::Paused,
            Self::Completed,
            Self::RolledBack,
            Self::Aborted,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    /// Running or paused: the devices of the current wave are served the new version.
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// One wave: the share of the policy's devices that has the new version once it starts
/// (cumulative), and how many pull intervals it is held before the gate decides.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wave {
    /// 1–100, rising from wave to wave; the last wave is 100.
    pub percent: u32,
    /// Pull intervals (the tenant's) the wave is held before it may advance (default 1).
    pub hold_pull_cycles: u32,
}

/// A wave's hold when the request gives none.
pub const DEFAULT_HOLD_PULL_CYCLES: u32 = 1;

/// When a wave is healthy enough to advance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// Above this share of failed devices (reports of failed fields against the new config,
    /// plus devices that stopped pulling) among those heard from, the rollout rolls back.
    pub max_failed_ratio: f64,
    /// Reports needed before the gate decides (fewer when the wave has fewer devices).
    pub min_reports: u32,
}

/// The gate's `min_reports` when the request gives none.
pub const DEFAULT_MIN_REPORTS: u32 = 20;

/// A rollout's plan as requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub waves: Vec<Wave>,
    pub health: Health,
}

impl Plan {
    /// Every problem with the plan, by field.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.waves.is_empty() || self.waves.len() > MAX_WAVES {
            errors.push(FieldError::new(
                "waves",
                "out_of_range",
                format!("give 1 to {MAX_WAVES} waves"),
            ));
        }
        let mut previous = 0;
        for (i, wave) in self.waves.iter().enumerate() {
            if !(1..=100).contains(&wave.percent) || wave.percent <= previous {
                errors.push(FieldError::new(
                    format!("waves[{i}].percent"),
                    "out_of_range",
                    "must be 1–100 and above the previous wave's",
                ));
            }
            previous = wave.percent;
            if wave.hold_pull_cycles > MAX_HOLD_PULL_CYCLES {
                errors.push(FieldError::new(
                    format!("waves[{i}].hold_pull_cycles"),
                    "out_of_range",
                    format!("must be 0–{MAX_HOLD_PULL_CYCLES}"),
                ));
            }
        }
        if self.waves.last().is_some_and(|w| w.percent != 100) {
            errors.push(FieldError::new(
                "waves",
                "incomplete",
                "the last wave must be 100 percent",
            ));
        }
        let ratio = self.health.max_failed_ratio;
        if !ratio.is_finite() || !(0.0..=1.0).contains(&ratio) {
            errors.push(FieldError::new(
                "health.max_failed_ratio",
                "out_of_range",
                "must be between 0 and 1",
            ));
        }
        if self.health.min_reports > MAX_MIN_REPORTS {
            errors.push(FieldError::new(
                "health.min_reports",
                "out_of_range",
                format!("must be 0–{MAX_MIN_REPORTS}"),
            ));
        }
        errors
    }

    /// The bucket limit of wave `index`: devices below it have the new version.
    pub fn cutoff(&self, index: usize) -> u32 {
        self.waves
            .get(index)
            .map_or(BUCKETS, |w| w.percent * (BUCKETS / 100))
    }
}

/// A rollout as stored: the content rolled out over the policy's `base_version`, the plan and
/// where it stands, with the figures of each wave reached so far.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub id: RolloutId,
    pub tenant_id: TenantId,
    pub policy_id: PolicyId,
    pub draft_id: DraftId,
    pub base_version: i32,
    /// The policy as it is once rolled out (at version `base_version + 1`).
    pub parent_id: Option<PolicyId>,
    pub content: PolicyContent,
    pub plan: Plan,
    pub state: RolloutState,
    /// The index of the current wave in `plan.waves`.
    pub wave: usize,
    pub wave_started_at: DateTime<Utc>,
    /// The figures of each wave reached, as last counted.
    pub waves: Vec<WaveFigures>,
    /// Why it stopped (rolled back, aborted), with the figures.
    pub reason: Option<String>,
    pub created_by: Option<OperatorId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Rollout {
    /// The policy node devices of the current wave are served.
    pub fn node(&self) -> PolicyNode {
        PolicyNode {
            id: self.policy_id,
            parent_id: self.parent_id,
            version: self.base_version + 1,
            content: self.content.clone(),
        }
    }

    /// Whether `device` is served the new version now.
    pub fn covers(&self, device: Uuid) -> bool {
        self.covers_bucket(bucket(device))
    }

    /// Whether the devices at `bucket` on the rollout scale are served the new version now.
    pub fn covers_bucket(&self, bucket: u32) -> bool {
        self.state.is_active() && bucket < self.plan.cutoff(self.wave)
    }
}

/// A device's place on the rollout scale: stable for the device, spread evenly.
pub fn bucket(device: Uuid) -> u32 {
    let digest = Sha256::digest(device.as_bytes());
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    n % BUCKETS
}

/// What a wave's devices showed, as the gate sees them. Every device of the wave is in exactly
/// one of: reported (failed or not), stopped, absent, or still to answer
/// (`served - reported - stopped - absent`: pulling, but no report on the new version yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveFigures {
    /// Devices of the wave (served the new version).
    pub served: u64,
    /// Devices that reported on the new version (applied or failed).
    pub reported: u64,
    /// Of those, devices that reported failed fields.
    pub failed: u64,
    /// Devices that pulled since the rollout started and then stopped pulling (stale or
    /// offline), without a report on the new version: counted as failed.
    pub stopped: u64,
    /// Devices that cannot answer: silent (stale or offline) or never seen, and not seen since
    /// the rollout started. They are not counted either way; they get the new version whenever
    /// they pull again, as after any save.
    #[serde(default)]
    pub absent: u64,
}

impl WaveFigures {
    /// Devices of the wave that can answer: all but the absent ones.
    pub fn answerable(&self) -> u64 {
        self.served.saturating_sub(self.absent)
    }

    /// Devices heard from: reported or stopped.
    pub fn heard(&self) -> u64 {
        self.reported + self.stopped
    }

    /// Failed and stopped devices among those heard from (reported or stopped).
    pub fn failed_ratio(&self) -> f64 {
        let heard = self.heard();
        if heard == 0 {
            0.0
        } else {
            (self.failed + self.stopped) as f64 / heard as f64
        }
    }
}

/// What the gate makes of a wave's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough heard yet, or the hold is not over.
    Wait,
    Advance,
    RollBack,
}

/// The gate. It decides once `min(min_reports, answerable)` devices are heard from (and at
/// least one, when any can answer): a wave smaller than `min_reports`, or one whose other
/// devices are absent, is judged on the devices it has. A failing wave rolls back as soon as it
/// is judged, hold or not; a healthy one advances once its hold is over. A wave none of whose
/// devices can answer (empty, or every device absent) has nothing to judge and advances once
/// its hold is over: it never waits for devices that are not there.
pub fn judge(health: &Health, figures: &WaveFigures, hold_over: bool) -> Verdict {
    let answerable = figures.answerable();
    let needed = u64::from(health.min_reports)
        .min(answerable)
        .max(u64::from(answerable > 0));
    if figures.heard() < needed {
        return Verdict::Wait;
    }
    if figures.failed_ratio() > health.max_failed_ratio {
        Verdict::RollBack
    } else if hold_over {
        Verdict::Advance
    } else {
        Verdict::Wait
    }
}

/// When wave `wave`, started at `started`, has been held long enough.
pub fn hold_over(
    wave: &Wave,
    started: DateTime<Utc>,
    pull_interval_seconds: u32,
    now: DateTime<Utc>,
) -> bool {
    now >= started + Duration::seconds(i64::from(wave.hold_pull_cycles) * i64::from(pull_interval_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(percents: &[u32]) -> Plan {
        Plan {
            waves: percents
                .iter()
                .map(|&percent| Wave {
                    percent,
                    hold_pull_cycles: 1,
                })
                .collect(),
            health: Health {
                max_failed_ratio: 0.02,
                min_reports: 20,
            },
        }
    }

    #[test]
    fn plans_must_rise_to_100() {
        assert!(plan(&[5, 25, 100]).check().is_empty());
        assert!(!plan(&[25, 5, 100]).check().is_empty());
        assert!(!plan(&[5, 25]).check().is_empty());
        assert!(!plan(&[]).check().is_empty());
        let mut bad = plan(&[100]);
        bad.health.max_failed_ratio = f64::NAN;
        assert_eq!(bad.check()[0].field, "health.max_failed_ratio");
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        let ids: Vec<Uuid> = (0..10_000).map(|_| Uuid::new_v4()).collect();
        assert!(ids.iter().all(|id| bucket(*id) == bucket(*id)));
        let cutoff = plan(&[5, 100]).cutoff(0);
        let in_first = ids.iter().filter(|id| bucket(**id) < cutoff).count();
        assert!(
            (350..=650).contains(&in_first),
            "{in_first} of 10000 in a 5 % wave"
        );
        assert_eq!(plan(&[5, 100]).cutoff(1), BUCKETS);
    }

    #[test]
    fn the_gate_waits_for_reports_and_the_hold() {
        let health = Health {
            max_failed_ratio: 0.1,
            min_reports: 5,
        };
        let figures = |reported, failed, stopped| WaveFigures {
            served: 10,
            reported,
            failed,
            stopped,
            absent: 0,
        };
        assert_eq!(judge(&health, &figures(3, 0, 0), true), Verdict::Wait);
        assert_eq!(judge(&health, &figures(5, 0, 0), false), Verdict::Wait);
        assert_eq!(judge(&health, &figures(5, 0, 0), true), Verdict::Advance);
        assert_eq!(judge(&health, &figures(5, 2, 0), false), Verdict::RollBack);
        assert_eq!(judge(&health, &figures(4, 0, 1), true), Verdict::RollBack);
        // A wave smaller than min_reports decides once all its devices are heard from.
        let small = WaveFigures {
            served: 2,
            reported: 2,
            ..WaveFigures::default()
        };
        assert_eq!(judge(&health, &small, true), Verdict::Advance);
        let one_to_go = WaveFigures { reported: 1, ..small };
        assert_eq!(judge(&health, &one_to_go, true), Verdict::Wait);
        // Absent devices are not waited for: 8 of 10 gone before the rollout, 2 answer.
        let mostly_absent = WaveFigures {
            served: 10,
            reported: 2,
            absent: 8,
            ..WaveFigures::default()
        };
        assert_eq!(judge(&health, &mostly_absent, true), Verdict::Advance);
        // Every device absent: nothing to judge, the hold decides.
        let all_absent = WaveFigures {
            served: 3,
            absent: 3,
            ..WaveFigures::default()
        };
        assert_eq!(judge(&health, &all_absent, false), Verdict::Wait);
        assert_eq!(judge(&health, &all_absent, true), Verdict::Advance);
        // Every device stopped after pulling the new version: failed, rolled back.
        let all_stopped = WaveFigures {
            served: 3,
            stopped: 3,
            ..WaveFigures::default()
        };
        assert_eq!(judge(&health, &all_stopped, false), Verdict::RollBack);
        // min_reports 0 still waits for one device when any can answer.
        let eager = Health {
            min_reports: 0,
            ..health
        };
        assert_eq!(judge(&eager, &figures(0, 0, 0), true), Verdict::Wait);
        // An empty wave has nothing to wait for.
        assert_eq!(judge(&health, &WaveFigures::default(), true), Verdict::Advance);
    }
}
