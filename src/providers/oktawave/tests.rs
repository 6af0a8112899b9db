//! Unit tests of the oktawave adapter: status mapping, wire decoding, input rules.
use std::time::{Duration, Instant};

use super::{token::*, *};

const SNAPSHOT: &str = r#"{"Id":48211,"Name":"web-01-before-upgrade","Description":"Snapshot before PHP upgrade","Instance":{"Id":130455},"CreationDate":"2025-03-11T10:15:42.123+01:00","LastChangeDate":"2025-03-11T10:19:05.87+01:00","CreationUser":{"Id":22017,"Login":"jan.kowalski@example.com","FirstName":"Jan","LastName":"Kowalski"},"IsSystem":false,"IsCurrent":false,"SnapshotParent":{"Id":48102}}"#;

fn ticket(end: &str, status: u32) -> String {
    format!(
        r#"{{"Id":9123451,"CreationDate":"2025-03-11T10:15:40.003+01:00","CreationUser":{{"Id":22017,"Login":"jan.kowalski@example.com"}},"EndDate":{end},"Status":{{"Id":{status},"Label":"x","Dictionary":{{"Id":40}}}},"OperationType":{{"Id":301,"Label":"Create snapshot","Dictionary":{{"Id":41}}}},"ObjectId":130455,"ObjectType":{{"Id":138,"Label":"Instance","Dictionary":{{"Id":42}}}},"ObjectName":"web-01","Progress":45}}"#
    )
}

#[test]
fn the_get_fixture_maps_to_an_available_snapshot_in_the_account_region() {
    let s = to_domain(RawValue::from_string(SNAPSHOT.to_owned()).unwrap(), "pl2").unwrap();
    assert_eq!(s.native_id, "48211");
    assert_eq!(s.name.as_deref(), Some("web-01-before-upgrade"));
    assert_eq!(
        s.description.as_deref(),
        Some("Snapshot before PHP upgrade")
    );
    assert_eq!(s.status, SnapshotStatus::Available);
    assert_eq!(s.vendor_status, None);
    assert_eq!(s.size_gb, None);
    assert_eq!(
        s.created_at.unwrap().to_rfc3339(),
        "2025-03-11T09:15:42.123+00:00"
    );
    let src = s.source.unwrap();
    assert_eq!(
        (src.kind, src.id.as_str()),
        (SourceKind::Instance, "130455")
    );
    assert_eq!(s.region.as_deref(), Some("PL2"));
    assert!(s.vendor.unwrap().get().contains("SnapshotParent"));
}

#[test]
fn sparse_snapshots_with_nulls_decode() {
    let raw = r#"{"Id":"7","Name":"a","Description":null,"Instance":null,"CreationDate":null,"CreationUser":null,"SnapshotParent":null}"#;
    let s = to_domain(RawValue::from_string(raw.to_owned()).unwrap(), "pl1").unwrap();
    assert_eq!(
        (s.native_id.as_str(), s.description, s.source, s.created_at),
        ("7", None, None, None)
    );
}

#[test]
fn list_and_empty_list_fixtures_decode_with_their_totals() {
    let list = format!(r#"{{"Items":[{SNAPSHOT},{SNAPSHOT}],"Meta":{{"Total":2}}}}"#);
    let c: Collection = serde_json::from_str(&list).unwrap();
    assert_eq!((c.items.len(), c.meta.unwrap().total), (2, Some(2)));
    let c: Collection = serde_json::from_str(r#"{"Items":[],"Meta":{"Total":0}}"#).unwrap();
    assert_eq!((c.items.len(), c.meta.unwrap().total), (0, Some(0)));
    let c: Collection = serde_json::from_str("{}").unwrap();
    assert!(c.items.is_empty() && c.meta.is_none());
}

#[test]
fn tickets_are_running_until_they_have_an_end_date() {
    let t: WireTicket = serde_json::from_str(&ticket("null", 134)).unwrap();
    assert_eq!(t.id.0, "9123451");
    assert!(t.end_date.is_none());
    let t: WireTicket = serde_json::from_str(&ticket(r#""0001-01-01T00:00:00""#, 135)).unwrap();
    assert!(t.end_date.is_none(), "Go's zero time is no end date");
    let t: WireTicket =
        serde_json::from_str(&ticket(r#""2025-03-11T10:19:05.87+01:00""#, 136)).unwrap();
    assert!(t.end_date.is_some());
    assert_eq!(t.status.unwrap().id.unwrap().0, TICKET_SUCCEEDED);
    let bare: WireTicket = serde_json::from_str(r#"{"Id":1}"#).unwrap();
    assert!(bare.end_date.is_none() && bare.status.is_none());
}

#[test]
fn the_token_fixture_decodes_and_is_refreshed_thirty_seconds_early() {
    let raw = r#"{"access_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.c2ln","expires_in":3600,"token_type":"Bearer"}"#;
    let t: TokenReply = serde_json::from_str(raw).unwrap();
    assert_eq!(t.expires_in, Some(3600.0));
    assert_eq!(usable_for(t.expires_in), Duration::from_secs(3570));
    assert_eq!(usable_for(Some(40.0)), Duration::from_secs(20));
    assert_eq!(usable_for(None), DEFAULT_LIFETIME - REFRESH_EARLY);
    assert_eq!(usable_for(Some(-1.0)), DEFAULT_LIFETIME - REFRESH_EARLY);
}

#[test]
fn names_and_descriptions_are_checked_against_the_vendor_rules() {
    assert!(check_name("web-01 before upgrade (ok)").is_ok());
    assert!(check_name(&"x".repeat(MAX_NAME)).is_ok());
    for bad in ["", "  ", "a/b", "a\\b", "a|b", "a<b", "a>b", "100%"] {
        assert!(
            matches!(
                check_name(bad),
                Err(ProviderError::Invalid { field: "name", .. })
            ),
            "{bad}"
        );
    }
    assert!(check_name(&"x".repeat(MAX_NAME + 1)).is_err());
    assert!(check_description("a | b <c> 100%").is_ok());
    assert!(matches!(
        check_description("a/b"),
        Err(ProviderError::Invalid {
            field: "description",
            ..
        })
    ));
}

#[test]
fn only_int32_ids_can_exist() {
    assert_eq!(int32("48211"), Some(48211));
    assert_eq!(int32("2147483647"), Some(i32::MAX));
    for bad in ["", "2147483648", "-1", "+1", "abc", "1.5"] {
        assert_eq!(int32(bad), None, "{bad}");
    }
    assert_eq!(snapshot_id("x"), Err(ProviderError::NotFound));
}

#[test]
fn the_command_body_is_pascal_case_and_omits_a_missing_description() {
    let both = SnapshotCommand {
        name: "n",
        description: Some("d"),
    };
    assert_eq!(
        serde_json::to_string(&both).unwrap(),
        r#"{"Name":"n","Description":"d"}"#
    );
    let name_only = SnapshotCommand {
        name: "n",
        description: None,
    };
    assert_eq!(
        serde_json::to_string(&name_only).unwrap(),
        r#"{"Name":"n"}"#
    );
}

#[test]
fn idle_expired_token_slots_are_dropped_when_a_new_key_arrives() {
    let cache = TokenCache::default();
    let held = cache.slot("held".to_owned());
    drop(cache.slot("idle-empty".to_owned()));
    let fresh = cache.slot("fresh".to_owned());
    *fresh.try_lock().unwrap() = Some(Token {
        access: "t".to_owned().into(),
        fresh_until: Instant::now() + Duration::from_secs(60),
    });
    drop(fresh);
    drop(cache.slot("new".to_owned()));
    let keys: std::collections::BTreeSet<_> = cache.slots.lock().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["fresh", "held", "new"].map(String::from).into());
    drop(held);
}
