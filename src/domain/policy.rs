//! Snapshot policies: which sources to snapshot, when (a cron expression in a time zone, or an
//! interval), what to name each snapshot, and which of the snapshots the policy made to keep
//! (restic's `forget` rules). Pure rules: nothing here stores, schedules or calls a vendor.

use std::str::FromStr;

use chrono::{DateTime, Datelike, Months, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Problem;

/// Longest interval: a year.
pub const MAX_INTERVAL_SECS: u64 = 366 * 24 * 3600;
/// Most sources one policy snapshots.
pub const MAX_SOURCES: usize = 100;
/// The name template when none is given.
pub const DEFAULT_NAME_TEMPLATE: &str = "{policy}-{slot}";

/// When a policy runs: `{"cron": "0 3 * * *", "time_zone": "Europe/Warsaw"}` or
/// `{"interval_secs": 3600}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Schedule {
    Cron(CronSchedule),
    Interval(IntervalSchedule),
}

/// A cron expression (five fields, or six with seconds first) read in a time zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CronSchedule {
    /// POSIX cron (`minute hour day-of-month month day-of-week`), as Vixie cron reads it.
    #[schema(example = "0 3 * * *")]
    pub cron: String,
    /// IANA time zone the expression is read in (daylight saving included).
    #[serde(default = "utc")]
    #[schema(example = "Europe/Warsaw", default = "UTC")]
    pub time_zone: String,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// Every `interval_secs`, counted from the policy's creation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntervalSchedule {
    #[schema(minimum = 1, maximum = 31_622_400, example = 3600)]
    #[serde(deserialize_with = "whole")]
    pub interval_secs: u64,
}

/// A whole number as JSON Schema reads one: `3`, or `3.0`.
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    let n = v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=9.0e15).contains(f))
            .map(|f| f as u64)
    });
    n.ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {v}")))
}

/// An optional retention count: a whole number up to 1,000,000 (larger is refused by
/// [`Retention::check`]), or absent/null.
fn whole_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => whole(v)
            .map_err(serde::de::Error::custom)
            .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX))),
    }
}

/// A rule of the input that does not hold: the field and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        message: message.into(),
    }
}

impl Schedule {
    /// Whether the schedule can be run: a cron expression croner reads, a known time zone, an
    /// interval of 1 s to a year.
    pub fn check(&self) -> Result<(), Invalid> {
        match self {
            Schedule::Cron(c) => {
                let (cron, tz) = c.parsed()?;
                // An expression no date matches (`0 0 30 2 *`) would never run: refused, not
                // stored as a policy that silently never fires.
                let now = Utc::now().with_timezone(&tz);
                match cron.find_next_occurrence(&now, false) {
                    Ok(_) => Ok(()),
                    Err(_) => Err(invalid(
                        "schedule.cron",
                        format!("{:?} matches no time to come", short(&c.cron)),
                    )),
                }
            }
            Schedule::Interval(i) if (1..=MAX_INTERVAL_SECS).contains(&i.interval_secs) => Ok(()),
            Schedule::Interval(_) => Err(invalid(
                "schedule.interval_secs",
                format!("interval_secs must be 1 to {MAX_INTERVAL_SECS}"),
            )),
        }
    }

    /// The time zone slots are read in (retention's hours, days and weeks too).
    pub fn time_zone(&self) -> Tz {
        match self {
            Schedule::Cron(c) => c.zone().unwrap_or(Tz::UTC),
            Schedule::Interval(_) => Tz::UTC,
        }
    }

    /// The first slot strictly after `t`; `anchor` is where intervals count from.
    pub fn next_after(&self, anchor: DateTime<Utc>, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Cron(c) => {
                let (cron, tz) = c.parsed().ok()?;
                cron.find_next_occurrence(&t.with_timezone(&tz), false)
                    .ok()
                    .map(|at| at.with_timezone(&Utc))
            }
            Schedule::Interval(i) => {
                let step = i64::try_from(i.interval_secs).ok()?.max(1);
                let since = (t - anchor).num_seconds();
                let n = if since < 0 { 0 } else { since / step + 1 };
                Some(anchor + TimeDelta::seconds(n * step))
            }
        }
    }

    /// The latest slot at or before `now`, when `first` (a slot) is not after it: a run missed
    /// while no replica was up runs once, for this slot, not once per missed slot.
    pub fn latest_due(
        &self,
        anchor: DateTime<Utc>,
        first: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        if first > now {
            return None;
        }
        let latest = match self {
            Schedule::Cron(c) => {
                let (cron, tz) = c.parsed().ok()?;
                cron.find_previous_occurrence(&now.with_timezone(&tz), true)
                    .ok()
                    .map(|at| at.with_timezone(&Utc))
            }
            Schedule::Interval(i) => {
                let step = i64::try_from(i.interval_secs).ok()?.max(1);
                let n = (now - anchor).num_seconds().max(0) / step;
                Some(anchor + TimeDelta::seconds(n * step))
            }
        };
        Some(latest.map_or(first, |l| l.max(first)))
    }
}

impl CronSchedule {
    fn zone(&self) -> Result<Tz, Invalid> {
        Tz::from_str(&self.time_zone).map_err(|_| {
            invalid(
                "schedule.time_zone",
                format!(
                    "unknown time zone {:?} (an IANA name such as Europe/Warsaw)",
                    short(&self.time_zone)
                ),
            )
        })
    }

    fn parsed(&self) -> Result<(croner::Cron, Tz), Invalid> {
        let tz = self.zone()?;
        let cron = croner::Cron::from_str(&self.cron)
            .map_err(|e| invalid("schedule.cron", format!("not a cron expression: {e}")))?;
        Ok((cron, tz))
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Which snapshots a policy keeps of each source, with restic's meaning (`restic forget`):
/// a snapshot is kept when any rule keeps it; with no rule set, every snapshot is kept. The
/// newest snapshot of a source is always kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// The newest n.
    #[schema(minimum = 1, maximum = 1000000)]
    #[serde(default, deserialize_with = "whole_count")]
    pub keep_last: Option<u32>,
    /// The newest of each of the last n hours that have one.
    #[schema(minimum = 1, maximum = 1000000)]
    #[serde(default, deserialize_with = "whole_count")]
    pub keep_hourly: Option<u32>,
    /// The newest of each of the last n days that have one (in the schedule's time zone).
    #[schema(minimum = 1, maximum = 1000000)]
    #[serde(default, deserialize_with = "whole_count")]
    pub keep_daily: Option<u32>,
    /// The newest of each of the last n ISO weeks that have one.
    #[schema(minimum = 1, maximum = 1000000)]
    #[serde(default, deserialize_with = "whole_count")]
    pub keep_weekly: Option<u32>,
    #[schema(minimum = 1, maximum = 1000000)]
    #[serde(default, deserialize_with = "whole_count")]
    pub keep_monthly: Option<u32>,
    #[schema(minimum = 1, maximum = 1000000)]
    #[serde(default, deserialize_with = "whole_count")]
    pub keep_yearly: Option<u32>,
    /// Every snapshot taken within this long of the newest: restic's duration (`1y2m7d3h`:
    /// years, months, days, hours).
    #[schema(example = "7d", pattern = "^([0-9]+y)?([0-9]+m)?([0-9]+d)?([0-9]+h)?$")]
    pub keep_within: Option<String>,
}

/// What retention decided for one snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Kept {
    pub snapshot_id: String,
    #[serde(serialize_with = "super::time::rfc3339")]
    pub slot: DateTime<Utc>,
    /// The rules that keep it (`last`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`,
    /// `within`, `newest`); empty: it is pruned.
    pub reasons: Vec<String>,
}

type Bucket = fn(DateTime<Tz>) -> i64;

impl Retention {
    /// Whether no rule is set (every snapshot is kept).
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n, _)| n.is_none()) && self.keep_within.is_none()
    }

    fn counts(&self) -> [(&'static str, Option<u32>, Bucket); 6] {
        [
            ("last", self.keep_last, |_| -1),
            ("hourly", self.keep_hourly, |t| {
                (t.year() as i64 * 10_000 + t.ordinal() as i64) * 100 + t.hour() as i64
            }),
            ("daily", self.keep_daily, |t| {
                t.year() as i64 * 10_000 + t.ordinal() as i64
            }),
            ("weekly", self.keep_weekly, |t| {
                let w = t.iso_week();
                w.year() as i64 * 100 + w.week() as i64
            }),
            ("monthly", self.keep_monthly, |t| {
                t.year() as i64 * 100 + t.month() as i64
            }),
            ("yearly", self.keep_yearly, |t| t.year() as i64),
        ]
    }

    /// Whether every count is at least 1 and `keep_within` reads.
    pub fn check(&self) -> Result<(), Invalid> {
        for (name, n, _) in self.counts() {
            if n == Some(0) || n.is_some_and(|n| n > 1_000_000) {
                return Err(invalid(
                    "retention",
                    format!("keep_{name} must be 1 to 1000000 (leave it out to not use it)"),
                ));
            }
        }
        if let Some(within) = &self.keep_within {
            within_span(within)?;
        }
        Ok(())
    }

    /// Decides, for the snapshots of one source (any order), which are kept and why, in
    /// `tz`'s hours, days and weeks; newest first. The newest is always kept.
    pub fn apply(&self, snapshots: &[(String, DateTime<Utc>)], tz: Tz) -> Vec<Kept> {
        let mut sorted: Vec<&(String, DateTime<Utc>)> = snapshots.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        let keep_all = self.is_empty();
        let cutoff = self
            .keep_within
            .as_deref()
            .and_then(|w| within_span(w).ok())
            .zip(sorted.first())
            .and_then(|((months, hours), newest)| {
                newest
                    .1
                    .checked_sub_months(Months::new(months))
                    .map(|t| t - TimeDelta::hours(hours))
            });
        let mut rules: Vec<(&'static str, u32, Bucket, Option<i64>)> = self
            .counts()
            .into_iter()
            .filter_map(|(name, n, bucket)| n.map(|n| (name, n, bucket, None)))
            .collect();
        let mut out = Vec::with_capacity(sorted.len());
        for (i, (id, slot)) in sorted.into_iter().enumerate() {
            let local = slot.with_timezone(&tz);
            let mut reasons = Vec::new();
            if keep_all {
                reasons.push("no_rules".to_owned());
            }
            if i == 0 {
                reasons.push("newest".to_owned());
            }
            if cutoff.is_some_and(|c| *slot >= c) {
                reasons.push("within".to_owned());
            }
            for (name, left, bucket, last) in rules.iter_mut() {
                if *left == 0 {
                    continue;
                }
                // `last` counts every snapshot; the others the newest of each period.
                let value = if *name == "last" {
                    i as i64
                } else {
                    bucket(local)
                };
                if *last != Some(value) {
                    *last = Some(value);
                    *left -= 1;
                    reasons.push((*name).to_owned());
                }
            }
            out.push(Kept {
                snapshot_id: id.clone(),
                slot: *slot,
                reasons,
            });
        }
        out
    }
}

/// `1y2m7d3h` as (months, hours).
fn within_span(s: &str) -> Result<(u32, i64), Invalid> {
    let bad = || {
        invalid(
            "retention.keep_within",
            "keep_within is a duration such as 7d, 12h or 1y6m (years, months, days, hours)",
        )
    };
    let (mut months, mut hours, mut digits) = (0u32, 0i64, String::new());
    let mut last_unit = 0;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u32 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match c {
            'y' => 1,
            'm' => 2,
            'd' => 3,
            'h' => 4,
            _ => return Err(bad()),
        };
        if unit <= last_unit || n > 100_000 {
            return Err(bad());
        }
        last_unit = unit;
        match c {
            'y' => months += n * 12,
            'm' => months += n,
            'd' => hours += i64::from(n) * 24,
            _ => hours += i64::from(n),
        }
    }
    if !digits.is_empty() || last_unit == 0 {
        return Err(bad());
    }
    Ok((months, hours))
}

/// A snapshot's name for a slot: `{policy}`, `{source}` and `{slot}` (`20261207t030000z`, the
/// slot in UTC) replaced; lowercase letters, digits and `-` are what every provider takes.
pub fn render_name(template: &str, policy: &str, source: &str, slot: DateTime<Utc>) -> String {
    template
        .replace("{policy}", policy)
        .replace("{source}", source)
        .replace("{slot}", &slot.format("%Y%m%dt%H%M%Sz").to_string())
}

/// Checks a name template: only the known placeholders, some text.
pub fn check_template(template: &str) -> Result<(), Invalid> {
    let stripped = template
        .replace("{policy}", "")
        .replace("{source}", "")
        .replace("{slot}", "");
    if stripped.contains(['{', '}']) {
        return Err(invalid(
            "name_template",
            "name_template may use {policy}, {source} and {slot} only",
        ));
    }
    if template.is_empty() || template.chars().count() > 100 {
        return Err(invalid(
            "name_template",
            "name_template must be 1 to 100 characters",
        ));
    }
    Ok(())
}

/// A policy as the caller writes it (`POST /v1/policies`, and stored so).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// What it is for.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// The account whose sources it snapshots.
    #[schema(example = "prod-eu", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub account: String,
    /// The sources (VM, volume, instance, server, droplet, slice ids) it snapshots, each once
    /// per slot; empty with `all_sources`.
    #[serde(default)]
    #[schema(max_items = 100, example = json!(["vm-7"]))]
    pub source_ids: Vec<String>,
    /// Snapshot every source of the account instead (`source_ids` then empty): each run lists
    /// the account's sources (`GET /v1/accounts/{account}/sources`) when it starts, so a VM
    /// made since the last run is in it and a deleted one is not. A run whose listing fails
    /// fails as a whole, saying why, and prunes nothing.
    #[serde(default)]
    #[schema(default = false)]
    pub all_sources: bool,
    pub schedule: Schedule,
    /// Each snapshot's name: `{policy}` (the policy id), `{source}` and `{slot}` (the slot in
    /// UTC, `20261207t030000z`) are replaced.
    #[serde(default = "default_template")]
    #[schema(default = "{policy}-{slot}", min_length = 1, max_length = 100)]
    pub name_template: String,
    /// What to keep of the snapshots it made, per source; absent: everything.
    #[serde(default)]
    pub retention: Retention,
    /// `false` pauses it: no run starts until it is enabled again (missed slots are not run).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub enabled: bool,
}

fn default_template() -> String {
    DEFAULT_NAME_TEMPLATE.to_owned()
}

fn yes() -> bool {
    true
}

impl PolicySpec {
    /// Every rule of a spec that needs no store or provider.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.all_sources && !self.source_ids.is_empty() {
            return Err(invalid(
                "source_ids",
                "source_ids must be empty with all_sources: a policy takes all of the account's \
                 sources or the ones it names",
            ));
        }
        if !self.all_sources && (self.source_ids.is_empty() || self.source_ids.len() > MAX_SOURCES)
        {
            return Err(invalid(
                "source_ids",
                format!("source_ids must name 1 to {MAX_SOURCES} sources (or set all_sources)"),
            ));
        }
        if let Some(bad) = self
            .source_ids
            .iter()
            .find(|s| s.is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control))
        {
            return Err(invalid(
                "source_ids",
                format!(
                    "source id {:?} must be 1 to 200 characters, none a control character",
                    short(bad)
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.source_ids.iter().find(|s| !seen.insert(s.as_str())) {
            return Err(invalid(
                "source_ids",
                format!("source {:?} is named twice", short(dup)),
            ));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 500)
        {
            return Err(invalid(
                "description",
                "description must be at most 500 characters",
            ));
        }
        self.schedule.check()?;
        check_template(&self.name_template)?;
        self.retention.check()
    }
}

/// A policy as stored: the caller's spec and where its schedule stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub tenant: String,
    /// `pol_…`.
    pub id: String,
    pub spec: PolicySpec,
    /// The next scheduled slot (`None` while disabled).
    pub next_slot: Option<DateTime<Utc>>,
    /// When that slot's run starts: the slot plus the policy's jitter.
    pub next_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Creates submitted, their snapshots not yet done (then pruning).
    Running,
    /// Every source's snapshot was made; retention applied.
    Succeeded,
    /// At least one source's snapshot failed (retention applied to the others only).
    Failed,
}

/// How one source's snapshot in a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Not yet submitted (or to be submitted again after a store failure).
    Pending,
    /// Submitted: its operation runs.
    Creating,
    Succeeded,
    Failed,
}

/// One source's snapshot in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunTarget {
    pub account: String,
    pub source_id: String,
    /// The snapshot's name, from the template.
    pub name: String,
    pub state: TargetState,
    /// The create's operation (`op_…`).
    pub operation_id: Option<String>,
    /// The snapshot made.
    pub snapshot_id: Option<String>,
    /// Why it failed.
    pub error: Option<Problem>,
}

/// A snapshot retention removed (its delete submitted), or could not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pruned {
    pub snapshot_id: String,
    pub source_id: String,
    #[serde(serialize_with = "super::time::rfc3339")]
    pub slot: DateTime<Utc>,
    /// `retention` (no rule keeps it: deleted), or `replaced_by_vendor` (a provider that keeps
    /// one snapshot per source replaced it with the run's new one).
    pub reason: String,
    /// The delete's operation.
    pub operation_id: Option<String>,
    /// Why the delete was not submitted (the snapshot is then kept on record, to be pruned by
    /// a later run).
    pub error: Option<Problem>,
}

/// One run of a policy: one per slot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyRun {
    /// `run_…`.
    pub id: String,
    pub policy_id: String,
    /// The scheduled time this run is for.
    #[serde(serialize_with = "super::time::rfc3339")]
    pub slot: DateTime<Utc>,
    pub state: RunState,
    #[serde(serialize_with = "super::time::rfc3339")]
    pub started_at: DateTime<Utc>,
    #[serde(serialize_with = "super::time::rfc3339_opt")]
    pub finished_at: Option<DateTime<Utc>>,
    /// What it created, source by source.
    pub targets: Vec<RunTarget>,
    /// For a policy over all of an account's sources: when the run listed them (its
    /// `targets` are what the provider listed then); `null` until it has.
    #[serde(default, serialize_with = "super::time::rfc3339_opt")]
    pub sources_listed_at: Option<DateTime<Utc>>,
    /// Why the run failed as a whole (the account's sources could not be listed); `null`
    /// otherwise (a source's own failure is on its target).
    #[serde(default)]
    pub error: Option<Problem>,
    /// What retention pruned after the run's snapshots succeeded.
    pub pruned: Vec<Pruned>,
}

impl PolicyRun {
    /// Whether every source's snapshot has ended.
    pub fn creates_done(&self) -> bool {
        self.targets
            .iter()
            .all(|t| matches!(t.state, TargetState::Succeeded | TargetState::Failed))
    }
}

/// A snapshot a policy made, as recorded when its create succeeded.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicySnapshot {
    pub snapshot_id: String,
    pub account: String,
    pub source_id: String,
    pub slot: DateTime<Utc>,
    pub pruned_at: Option<DateTime<Utc>>,
    pub prune_operation: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn kept(r: &Retention, items: &[(&str, &str)]) -> Vec<(String, Vec<String>)> {
        let items: Vec<(String, DateTime<Utc>)> = items
            .iter()
            .map(|(id, t)| ((*id).to_owned(), at(t)))
            .collect();
        r.apply(&items, Tz::UTC)
            .into_iter()
            .map(|k| (k.snapshot_id, k.reasons))
            .collect()
    }

    /// restic's own example shape: daily snapshots over three weeks, kept by each rule.
    #[test]
    fn retention_keeps_what_restic_would() {
        let days: Vec<(String, String)> = (1..=21)
            .map(|d| (format!("s{d:02}"), format!("2026-03-{d:02}T03:00:00Z")))
            .collect();
        let items: Vec<(&str, &str)> = days.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let ids = |r: &Retention| -> Vec<String> {
            kept(r, &items)
                .into_iter()
                .filter(|(_, why)| !why.is_empty())
                .map(|(id, _)| id)
                .collect()
        };
        let table: [(Retention, &[&str]); 6] = [
            (
                Retention {
                    keep_last: Some(3),
                    ..Default::default()
                },
                &["s21", "s20", "s19"],
            ),
            (
                Retention {
                    keep_daily: Some(2),
                    ..Default::default()
                },
                &["s21", "s20"],
            ),
            // 2026-03-01 is a Sunday: ISO weeks end on the 1st, 8th, 15th and 22nd.
            (
                Retention {
                    keep_weekly: Some(3),
                    ..Default::default()
                },
                &["s21", "s15", "s08"],
            ),
            (
                Retention {
                    keep_monthly: Some(5),
                    ..Default::default()
                },
                &["s21"],
            ),
            (
                Retention {
                    keep_within: Some("2d".into()),
                    ..Default::default()
                },
                &["s21", "s20", "s19"],
            ),
            (
                Retention {
                    keep_last: Some(1),
                    keep_weekly: Some(2),
                    ..Default::default()
                },
                &["s21", "s15"],
            ),
        ];
        for (rule, want) in table {
            assert_eq!(ids(&rule), want, "{rule:?}");
        }
        // No rule: everything kept.
        assert_eq!(ids(&Retention::default()).len(), 21);
    }

    #[test]
    fn the_newest_is_kept_whatever_the_rules_say() {
        let r = Retention {
            keep_within: Some("1h".into()),
            ..Default::default()
        };
        let out = kept(&r, &[("a", "2026-01-01T00:00:00Z")]);
        assert!(out[0].1.contains(&"newest".to_owned()), "{out:?}");
        assert!(r.apply(&[], Tz::UTC).is_empty());
    }

    #[test]
    fn hourly_buckets_are_read_in_the_time_zone() {
        // 23:30 and 00:30 UTC are the same day in New York (18:30, 19:30): daily keeps one.
        let r = Retention {
            keep_daily: Some(5),
            ..Default::default()
        };
        let items = vec![
            ("a".to_owned(), at("2026-06-01T23:30:00Z")),
            ("b".to_owned(), at("2026-06-02T00:30:00Z")),
        ];
        let ny = r.apply(&items, Tz::America__New_York);
        assert_eq!(ny.iter().filter(|k| !k.reasons.is_empty()).count(), 1);
        let utc = r.apply(&items, Tz::UTC);
        assert_eq!(utc.iter().filter(|k| !k.reasons.is_empty()).count(), 2);
    }

    #[test]
    fn keep_within_reads_restic_durations() {
        assert_eq!(within_span("1y2m3d4h"), Ok((14, 76)));
        assert_eq!(within_span("12h"), Ok((0, 12)));
        for bad in ["", "3", "d", "1h1d", "1w", "-1d"] {
            assert!(within_span(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interval_slots_count_from_the_anchor_and_missed_ones_run_once() {
        let s = Schedule::Interval(IntervalSchedule { interval_secs: 60 });
        let anchor = at("2026-01-01T00:00:00Z");
        assert_eq!(
            s.next_after(anchor, anchor),
            Some(at("2026-01-01T00:01:00Z"))
        );
        assert_eq!(
            s.next_after(anchor, at("2026-01-01T00:05:30Z")),
            Some(at("2026-01-01T00:06:00Z"))
        );
        // Down from 00:01 to 00:05:30: one run, for 00:05.
        assert_eq!(
            s.latest_due(
                anchor,
                at("2026-01-01T00:01:00Z"),
                at("2026-01-01T00:05:30Z")
            ),
            Some(at("2026-01-01T00:05:00Z"))
        );
        assert_eq!(
            s.latest_due(
                anchor,
                at("2026-01-01T00:06:00Z"),
                at("2026-01-01T00:05:30Z")
            ),
            None
        );
    }

    #[test]
    fn cron_slots_are_read_in_their_time_zone() {
        let s = Schedule::Cron(CronSchedule {
            cron: "0 3 * * *".into(),
            time_zone: "Europe/Warsaw".into(),
        });
        s.check().unwrap();
        let anchor = at("2026-01-01T00:00:00Z");
        // 03:00 in Warsaw is 02:00 UTC in winter, 01:00 UTC in summer.
        assert_eq!(
            s.next_after(anchor, at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T02:00:00Z"))
        );
        assert_eq!(
            s.next_after(anchor, at("2026-07-10T12:00:00Z")),
            Some(at("2026-07-11T01:00:00Z"))
        );
        assert_eq!(
            s.latest_due(
                anchor,
                at("2026-01-02T02:00:00Z"),
                at("2026-01-10T12:00:00Z")
            ),
            Some(at("2026-01-10T02:00:00Z"))
        );
        let never = Schedule::Cron(CronSchedule {
            cron: "0 0 30 2 *".into(),
            time_zone: "UTC".into(),
        });
        assert_eq!(never.check().unwrap_err().field, "schedule.cron");
        let bad = Schedule::Cron(CronSchedule {
            cron: "61 * * * *".into(),
            time_zone: "UTC".into(),
        });
        assert_eq!(bad.check().unwrap_err().field, "schedule.cron");
        let zone = Schedule::Cron(CronSchedule {
            cron: "0 3 * * *".into(),
            time_zone: "Mars/Olympus".into(),
        });
        assert_eq!(zone.check().unwrap_err().field, "schedule.time_zone");
    }

    #[test]
    fn names_render_from_the_template() {
        let slot = at("2026-12-07T03:00:00Z");
        assert_eq!(
            render_name(DEFAULT_NAME_TEMPLATE, "nightly", "vm-1", slot),
            "nightly-20261207t030000z"
        );
        assert!(check_template("{policy}-{when}").is_err());
        assert!(check_template("{source}-{slot}").is_ok());
    }
}
