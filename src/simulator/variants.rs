//! Variants: the readings of an undocumented vendor behaviour the simulator can play, so that an
//! adapter is tested against every plausible way the real vendor might go, not only the one guess
//! the adapter and the default simulator happen to share.
//!
//! | name | value | what the simulated vendor then does |
//! |---|---|---|
//! | `hyperstack.page_cap` | n ≥ 1 | caps `pageSize` at n (the reply's `page_size` says so) |
//! | `hyperstack.page_size_echoes_asked` | — | the reply's `page_size` is the size asked for, not the one applied |
//! | `hyperstack.count_is_page` | — | `count` is the page's count, not the total |
//! | `hyperstack.not_found_400` | — | answers 400, not 404, for a snapshot that does not exist |
//! | `hyperstack.create_failed_status` | — | a failed snapshot reads `CREATE_FAILED`, not `ERROR` |
//! | `hyperstack.undocumented_status` | — | a failed snapshot reads `SUSPENDED`, a status no page names |
//! | `koyeb.migrating` | — | a finished snapshot is `MIGRATING` (to cold storage) before `AVAILABLE`; seeded ones stay `MIGRATING` |
//! | `koyeb.page_cap` | n ≥ 1 | caps `limit` at n without saying so (the reply echoes the limit asked) |
//! | `koyeb.no_has_next` | — | list replies carry no `has_next` |
//! | `oktawave.page_base` | 0 or 1 | `pageNumber` counts from this (default 1) |
//! | `oktawave.snapshot_before_ticket` | — | a new snapshot is listed while its ticket still runs |
//! | `oktawave.listing_lag` | n | a new snapshot is listed only n seconds after its ticket ended |
//! | `hostinger.vm_read_fails` | VM id | `GET …/{vm}/snapshot` of that VM answers 500 |
//! | `syminet.slice_list_shows_in_progress` | — | the per-slice list shows snapshots still being taken |
//! | `syminet.progress_only` | — | a snapshot being taken shows `progress` below 100 and `in_progress: null` |
//! | `syminet.restore_secs` | n | a restore keeps the slice busy n seconds (default: the async delay) |
//! | `restore.new_resource_fails` | — | the VM (Hyperstack) or volume (Koyeb) a restore makes fails to build |
//! | `restore.new_resource_unknown` | — | that VM or volume ends in a status no page names (`SHELVED`, `PERSISTENT_VOLUME_STATUS_SUSPENDED`) |
//! | `rate_limit.no_retry_after` (alias `429-without-retry-after`) | — | 429 faults carry no `Retry-After` |
//!
//! Set at start (`snapgate simulate --variant NAME[=VALUE]`, repeatable) or at run time on the
//! control plane (`GET`/`PUT`/`DELETE /_sim/variants`). Owns only the names, their parsing and the
//! shared cell; each vendor file reads the fields it plays.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde_json::Value;

/// The active variants; `Default` is the simulator's own reading of every vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variants {
    pub hyperstack_page_cap: Option<u32>,
    pub hyperstack_page_size_echoes_asked: bool,
    pub hyperstack_count_is_page: bool,
    pub hyperstack_not_found_400: bool,
    pub hyperstack_create_failed_status: bool,
    pub hyperstack_undocumented_status: bool,
    pub koyeb_migrating: bool,
    pub koyeb_page_cap: Option<u32>,
    pub koyeb_no_has_next: bool,
    pub oktawave_page_base: u8,
    pub oktawave_snapshot_before_ticket: bool,
    pub oktawave_listing_lag: Option<u32>,
    pub hostinger_vm_read_fails: Option<i64>,
    pub syminet_slice_list_shows_in_progress: bool,
    pub syminet_progress_only: bool,
    pub syminet_restore_secs: Option<u32>,
    pub restore_new_resource_fails: bool,
    pub restore_new_resource_unknown: bool,
    pub rate_limit_no_retry_after: bool,
}

impl Default for Variants {
    fn default() -> Self {
        Self {
            hyperstack_page_cap: None,
            hyperstack_page_size_echoes_asked: false,
            hyperstack_count_is_page: false,
            hyperstack_not_found_400: false,
            hyperstack_create_failed_status: false,
            hyperstack_undocumented_status: false,
            koyeb_migrating: false,
            koyeb_page_cap: None,
            koyeb_no_has_next: false,
            oktawave_page_base: 1,
            oktawave_snapshot_before_ticket: false,
            oktawave_listing_lag: None,
            hostinger_vm_read_fails: None,
            syminet_slice_list_shows_in_progress: false,
            syminet_progress_only: false,
            syminet_restore_secs: None,
            restore_new_resource_fails: false,
            restore_new_resource_unknown: false,
            rate_limit_no_retry_after: false,
        }
    }
}

/// Every variant name, in the order of the module table.
pub const NAMES: [&str; 19] = [
    "hyperstack.page_cap",
    "hyperstack.page_size_echoes_asked",
    "hyperstack.count_is_page",
    "hyperstack.not_found_400",
    "hyperstack.create_failed_status",
    "hyperstack.undocumented_status",
    "koyeb.migrating",
    "koyeb.page_cap",
    "koyeb.no_has_next",
    "oktawave.page_base",
    "oktawave.snapshot_before_ticket",
    "oktawave.listing_lag",
    "hostinger.vm_read_fails",
    "syminet.slice_list_shows_in_progress",
    "syminet.progress_only",
    "syminet.restore_secs",
    "restore.new_resource_fails",
    "restore.new_resource_unknown",
    "rate_limit.no_retry_after",
];

impl Variants {
    /// Sets variants from `NAME` or `NAME=VALUE` (the form of `--variant`), several joined
    /// by commas.
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        for one in spec.split(',').filter(|s| !s.trim().is_empty()) {
            let (name, value) = match one.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (one.trim(), None),
            };
            self.set(name, value)?;
        }
        Ok(())
    }

    /// Sets one variant; flags take no value (or `true`/`false`), numbers require one.
    pub fn set(&mut self, name: &str, value: Option<&str>) -> Result<(), String> {
        let flag = || match value {
            None | Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(format!(
                "variant `{name}` is a flag; `{other}` is not true/false"
            )),
        };
        let number = |min: i64, max: i64| -> Result<i64, String> {
            let raw = value.ok_or_else(|| format!("variant `{name}` needs a value: {name}=N"))?;
            raw.parse::<i64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    format!("variant `{name}` takes an integer {min}..={max}, not `{raw}`")
                })
        };
        match name {
            "hyperstack.page_cap" => {
                self.hyperstack_page_cap = Some(number(1, 10_000)? as u32);
            }
            "hyperstack.page_size_echoes_asked" => {
                self.hyperstack_page_size_echoes_asked = flag()?;
            }
            "hyperstack.count_is_page" => self.hyperstack_count_is_page = flag()?,
            "hyperstack.not_found_400" => self.hyperstack_not_found_400 = flag()?,
            "hyperstack.create_failed_status" => self.hyperstack_create_failed_status = flag()?,
            "hyperstack.undocumented_status" => self.hyperstack_undocumented_status = flag()?,
            "koyeb.migrating" => self.koyeb_migrating = flag()?,
            "koyeb.page_cap" => self.koyeb_page_cap = Some(number(1, 100)? as u32),
            "koyeb.no_has_next" => self.koyeb_no_has_next = flag()?,
            "oktawave.page_base" => self.oktawave_page_base = number(0, 1)? as u8,
            "oktawave.snapshot_before_ticket" => self.oktawave_snapshot_before_ticket = flag()?,
            "oktawave.listing_lag" => {
                self.oktawave_listing_lag = Some(number(0, 86_400)? as u32);
            }
            "hostinger.vm_read_fails" => {
                self.hostinger_vm_read_fails = Some(number(1, i64::MAX)?);
            }
            "syminet.slice_list_shows_in_progress" => {
                self.syminet_slice_list_shows_in_progress = flag()?;
            }
            "syminet.progress_only" => self.syminet_progress_only = flag()?,
            "syminet.restore_secs" => self.syminet_restore_secs = Some(number(0, 86_400)? as u32),
            "restore.new_resource_fails" => self.restore_new_resource_fails = flag()?,
            "restore.new_resource_unknown" => self.restore_new_resource_unknown = flag()?,
            "rate_limit.no_retry_after" | "429-without-retry-after" => {
                self.rate_limit_no_retry_after = flag()?;
            }
            other => {
                return Err(format!(
                    "unknown variant `{other}` (known: {})",
                    NAMES.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// Sets every variant of a JSON object `{name: true | number}` on top of the defaults.
    pub fn from_json(map: &serde_json::Map<String, Value>) -> Result<Self, String> {
        let mut v = Variants::default();
        for (name, value) in map {
            let text = match value {
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                other => {
                    return Err(format!(
                        "variant `{name}`: `{other}` is not a flag or number"
                    ))
                }
            };
            v.set(name, Some(&text))?;
        }
        Ok(v)
    }

    /// The variants that differ from the defaults, as `{name: true | number}`.
    pub fn to_json(self) -> BTreeMap<&'static str, Value> {
        let mut out = BTreeMap::new();
        let mut flag = |name, on: bool| {
            if on {
                out.insert(name, Value::Bool(true));
            }
        };
        flag(
            "hyperstack.page_size_echoes_asked",
            self.hyperstack_page_size_echoes_asked,
        );
        flag("hyperstack.count_is_page", self.hyperstack_count_is_page);
        flag("hyperstack.not_found_400", self.hyperstack_not_found_400);
        flag(
            "hyperstack.create_failed_status",
            self.hyperstack_create_failed_status,
        );
        flag(
            "hyperstack.undocumented_status",
            self.hyperstack_undocumented_status,
        );
        flag("koyeb.migrating", self.koyeb_migrating);
        flag("koyeb.no_has_next", self.koyeb_no_has_next);
        flag("syminet.progress_only", self.syminet_progress_only);
        flag(
            "restore.new_resource_unknown",
            self.restore_new_resource_unknown,
        );
        flag(
            "oktawave.snapshot_before_ticket",
            self.oktawave_snapshot_before_ticket,
        );
        flag(
            "syminet.slice_list_shows_in_progress",
            self.syminet_slice_list_shows_in_progress,
        );
        flag(
            "restore.new_resource_fails",
            self.restore_new_resource_fails,
        );
        flag("rate_limit.no_retry_after", self.rate_limit_no_retry_after);
        if let Some(n) = self.hyperstack_page_cap {
            out.insert("hyperstack.page_cap", n.into());
        }
        if let Some(n) = self.koyeb_page_cap {
            out.insert("koyeb.page_cap", n.into());
        }
        if let Some(n) = self.oktawave_listing_lag {
            out.insert("oktawave.listing_lag", n.into());
        }
        if self.oktawave_page_base != 1 {
            out.insert("oktawave.page_base", self.oktawave_page_base.into());
        }
        if let Some(vm) = self.hostinger_vm_read_fails {
            out.insert("hostinger.vm_read_fails", vm.into());
        }
        if let Some(n) = self.syminet_restore_secs {
            out.insert("syminet.restore_secs", n.into());
        }
        out
    }
}

/// The variants every vendor reads, changeable at run time.
#[derive(Debug, Default)]
pub(super) struct VariantCell(RwLock<Variants>);

impl VariantCell {
    pub(super) fn new(v: Variants) -> Self {
        Self(RwLock::new(v))
    }

    pub(super) fn get(&self) -> Variants {
        *self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn put(&self, v: Variants) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_and_round_trips_through_json() {
        let mut v = Variants::default();
        for name in NAMES {
            let spec = match name {
                "hyperstack.page_cap" => "hyperstack.page_cap=20".to_owned(),
                "koyeb.page_cap" => "koyeb.page_cap=7".to_owned(),
                "oktawave.listing_lag" => "oktawave.listing_lag=3".to_owned(),
                "oktawave.page_base" => "oktawave.page_base=0".to_owned(),
                "hostinger.vm_read_fails" => "hostinger.vm_read_fails=1043".to_owned(),
                "syminet.restore_secs" => "syminet.restore_secs=5".to_owned(),
                flag => flag.to_owned(),
            };
            v.apply(&spec).unwrap();
        }
        let json = serde_json::to_value(v.to_json()).unwrap();
        assert_eq!(json.as_object().unwrap().len(), NAMES.len());
        assert_eq!(Variants::from_json(json.as_object().unwrap()), Ok(v));
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let mut v = Variants::default();
        assert!(v
            .apply("hyperstack.page_cap")
            .unwrap_err()
            .contains("needs a value"));
        assert!(v
            .apply("oktawave.page_base=2")
            .unwrap_err()
            .contains("0..=1"));
        assert!(v.apply("nope").unwrap_err().contains("unknown variant"));
        v.apply("429-without-retry-after").unwrap();
        assert!(v.rate_limit_no_retry_after);
    }
}
