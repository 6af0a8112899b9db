//! Variants: the readings of an undocumented vendor behaviour the simulator can play, so that an
//! adapter is tested against every plausible way the real vendor might go, not only the one guess
//! the adapter and the default simulator happen to share.
//!
//! | name | value | what the simulated vendor then does |
//! |---|---|---|
//! | `hyperstack.page_cap` | n ≥ 1 | caps `pageSize` at n (the reply's `page_size` says so) |
//! | `hyperstack.not_found_400` | — | answers 400, not 404, for a snapshot that does not exist |
//! | `koyeb.migrating` | — | a finished snapshot is `MIGRATING` (to cold storage) before `AVAILABLE`; seeded ones stay `MIGRATING` |
//! | `oktawave.page_base` | 0 or 1 | `pageNumber` counts from this (default 1) |
//! | `oktawave.snapshot_before_ticket` | — | a new snapshot is listed while its ticket still runs |
//! | `hostinger.vm_read_fails` | VM id | `GET …/{vm}/snapshot` of that VM answers 500 |
//! | `syminet.slice_list_shows_in_progress` | — | the per-slice list shows snapshots still being taken |
//! | `syminet.restore_secs` | n | a restore keeps the slice busy n seconds (default: the async delay) |
//! | `restore.new_resource_fails` | — | the VM (Hyperstack) or volume (Koyeb) a restore makes fails to build |
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
    pub hyperstack_not_found_400: bool,
    pub koyeb_migrating: bool,
    pub oktawave_page_base: u8,
    pub oktawave_snapshot_before_ticket: bool,
    pub hostinger_vm_read_fails: Option<i64>,
    pub syminet_slice_list_shows_in_progress: bool,
    pub syminet_restore_secs: Option<u32>,
    pub restore_new_resource_fails: bool,
    pub rate_limit_no_retry_after: bool,
}

impl Default for Variants {
    fn default() -> Self {
        Self {
            hyperstack_page_cap: None,
            hyperstack_not_found_400: false,
            koyeb_migrating: false,
            oktawave_page_base: 1,
            oktawave_snapshot_before_ticket: false,
            hostinger_vm_read_fails: None,
            syminet_slice_list_shows_in_progress: false,
            syminet_restore_secs: None,
            restore_new_resource_fails: false,
            rate_limit_no_retry_after: false,
        }
    }
}

/// Every variant name, in the order of the module table.
pub const NAMES: [&str; 10] = [
    "hyperstack.page_cap",
    "hyperstack.not_found_400",
    "koyeb.migrating",
    "oktawave.page_base",
    "oktawave.snapshot_before_ticket",
    "hostinger.vm_read_fails",
    "syminet.slice_list_shows_in_progress",
    "syminet.restore_secs",
    "restore.new_resource_fails",
    "rate_limit.no_retry_after",
];

impl Variants {
    /// Sets one variant from `NAME` or `NAME=VALUE` (the form of `--variant`).
    pub fn apply(&mut self, spec: &str) -> Result<(), String> {
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (spec.trim(), None),
        };
        self.set(name, value)
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
            "hyperstack.not_found_400" => self.hyperstack_not_found_400 = flag()?,
            "koyeb.migrating" => self.koyeb_migrating = flag()?,
            "oktawave.page_base" => self.oktawave_page_base = number(0, 1)? as u8,
            "oktawave.snapshot_before_ticket" => self.oktawave_snapshot_before_ticket = flag()?,
            "hostinger.vm_read_fails" => {
                self.hostinger_vm_read_fails = Some(number(1, i64::MAX)?);
            }
            "syminet.slice_list_shows_in_progress" => {
                self.syminet_slice_list_shows_in_progress = flag()?;
            }
            "syminet.restore_secs" => self.syminet_restore_secs = Some(number(0, 86_400)? as u32),
            "restore.new_resource_fails" => self.restore_new_resource_fails = flag()?,
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
        flag("hyperstack.not_found_400", self.hyperstack_not_found_400);
        flag("koyeb.migrating", self.koyeb_migrating);
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
