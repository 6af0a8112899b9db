//! Unit tests of the syminet adapter: status mapping, wire decoding, input rules.
use super::{progress::*, *};

const LIST: &str = r#"{"data": [
    {"created": "2025-03-11 09:15:42.118204", "datacenter_id": 6, "duration": "51s",
     "id": 15340, "in_progress": null, "legacy": null, "name": "web1-before-upgrade",
     "perms": "rw", "progress": null, "region": "SFO1", "snapshot_size": 18,
     "vm_datacenter_id": 6, "vm_deleted": null, "vm_id": 3911, "vm_perms": "rw",
     "vm_user_id": 1502, "vmname": "web1.example.com"},
    {"created": "2025-03-14 22:00:07.540912", "datacenter_id": 6, "duration": "04s",
     "id": 15377, "in_progress": null, "legacy": null, "name": "db1-1741989600",
     "perms": "ro", "progress": null, "region": "SFO1", "snapshot_size": 2,
     "vm_datacenter_id": 6, "vm_deleted": null, "vm_id": 3920, "vm_perms": "rw",
     "vm_user_id": 1502, "vmname": "db1"}
], "page": 1, "pages": 1, "results": 2}"#;

const SLICE_LIST: &str = r#"{"data": [
    {"backup_full_size": 50, "created": "2024-11-14 06:55:36.925397", "duration": "43s",
     "id": 14901, "name": "11test1-173049603"},
    {"backup_full_size": 50, "created": "2025-02-06 17:19:36.925397", "duration": "47s",
     "id": 13680, "name": "11testing-1724973454"}
]}"#;

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap()
}

fn item(json: &str) -> WireImage {
    decode(&raw(json)).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    wire::parse_time(s).unwrap()
}

#[test]
fn list_all_items_map_every_documented_field() {
    let page: ListPage = serde_json::from_str(LIST).unwrap();
    assert_eq!(page.pages, 1);
    let r = page.data.into_iter().next().unwrap();
    let s = to_domain(decode(&r).unwrap(), r, None);
    assert_eq!(s.native_id, "15340");
    assert_eq!(s.name.as_deref(), Some("web1-before-upgrade"));
    assert_eq!(s.status, SnapshotStatus::Available);
    assert_eq!(s.vendor_status, None);
    assert_eq!(s.size_gb, Some(18.0));
    assert_eq!(
        s.created_at.unwrap().to_rfc3339(),
        "2025-03-11T09:15:42.118204+00:00"
    );
    assert_eq!(
        s.source,
        Some(Source {
            kind: SourceKind::Slice,
            id: "3911".to_owned()
        })
    );
    assert_eq!(s.region.as_deref(), Some("SFO1"));
    assert!(s.vendor.unwrap().get().contains("web1.example.com"));
}

#[test]
fn the_empty_list_reports_page_zero() {
    let page: ListPage =
        serde_json::from_str(r#"{"data":[],"page":0,"pages":0,"results":0}"#).unwrap();
    assert!(page.data.is_empty());
    assert_eq!(page.pages, 0);
}

#[test]
fn per_slice_items_take_their_source_from_the_slice() {
    let list: SliceList = serde_json::from_str(SLICE_LIST).unwrap();
    let r = list.data.into_iter().next().unwrap();
    let s = to_domain(decode(&r).unwrap(), r, Some("3911"));
    assert_eq!(s.native_id, "14901");
    assert_eq!(s.status, SnapshotStatus::Available);
    assert_eq!(s.size_gb, None);
    assert_eq!(s.region, None);
    assert_eq!(s.source.unwrap().id, "3911");
    assert_eq!(
        s.created_at.unwrap().to_rfc3339(),
        "2024-11-14T06:55:36.925397+00:00"
    );
}

#[test]
fn an_item_in_progress_is_creating() {
    for flag in ["true", "1", "\"2025-03-11 09:15:42\"", "{\"pct\": 40}"] {
        let json = format!(
            r#"{{"id": 1, "name": "a", "created": "2025-03-11 09:15:42.1", "in_progress": {flag}}}"#
        );
        let r = raw(&json);
        let s = to_domain(decode(&r).unwrap(), r, None);
        assert_eq!(s.status, SnapshotStatus::Creating, "{flag}");
        assert_eq!(s.vendor_status, Some(format!("in_progress:{flag}")));
    }
    for flag in ["null", "false", "0", "\"\"", "[]", "{}"] {
        let json = format!(r#"{{"id": 1, "name": "a", "in_progress": {flag}}}"#);
        let r = raw(&json);
        assert_eq!(
            to_domain(decode(&r).unwrap(), r, None).status,
            SnapshotStatus::Available,
            "{flag}"
        );
    }
}

fn tracking() -> CreateTracking {
    CreateTracking {
        slice_id: "3911".to_owned(),
        name: "web1-before-upgrade".to_owned(),
        submitted_at: at("2025-03-11T09:15:00Z"),
    }
}

#[test]
fn a_create_resolves_to_the_listed_snapshot_of_that_name() {
    let t = tracking();
    let now = at("2025-03-11T09:16:00Z");
    let done = item(
        r#"{"id": 15340, "name": "web1-before-upgrade", "created": "2025-03-11 09:15:42.118204"}"#,
    );
    let p = create_progress(&t, [done].into_iter(), t.submitted_at, now);
    assert_eq!(
        (p.state, p.native_id.as_deref()),
        (OperationState::Succeeded, Some("15340"))
    );

    let busy = item(
        r#"{"id": 15340, "name": "web1-before-upgrade", "created": "2025-03-11 09:15:42", "in_progress": true}"#,
    );
    let p = create_progress(&t, [busy].into_iter(), t.submitted_at, now);
    assert_eq!(p.state, OperationState::Running);

    // An older snapshot of the same name is not the one being created.
    let old =
        item(r#"{"id": 100, "name": "web1-before-upgrade", "created": "2025-01-01 00:00:00.0"}"#);
    let p = create_progress(&t, [old].into_iter(), t.submitted_at, now);
    assert_eq!((p.state, p.native_id), (OperationState::Running, None));
}

#[test]
fn a_create_never_listed_fails_after_the_timeout() {
    let t = tracking();
    let p = create_progress(
        &t,
        std::iter::empty(),
        t.submitted_at,
        at("2025-03-11T09:44:00Z"),
    );
    assert_eq!(p.state, OperationState::Running);
    let p = create_progress(
        &t,
        std::iter::empty(),
        t.submitted_at,
        at("2025-03-11T09:46:00Z"),
    );
    assert_eq!(p.state, OperationState::Failed);
}

#[test]
fn a_restore_settles_after_the_settle_time() {
    let start = at("2025-03-11T09:15:00Z");
    let settle = std::time::Duration::from_secs(600);
    for (now, state) in [
        ("2025-03-11T09:15:00Z", OperationState::Running),
        ("2025-03-11T09:24:59Z", OperationState::Running),
        ("2025-03-11T09:25:00Z", OperationState::Succeeded),
    ] {
        assert_eq!(
            restore_progress(start, at(now), settle).state,
            state,
            "{now}"
        );
    }
}

#[test]
fn deletes_finish_when_unlisted_and_renames_when_renamed() {
    let start = at("2025-03-11T09:15:00Z");
    let now = at("2025-03-11T09:15:10Z");
    let s = item(r#"{"id": 15340, "name": "web1-pre-php83"}"#);
    assert_eq!(
        list_progress(OperationKind::Delete, None, "", start, now).state,
        OperationState::Succeeded
    );
    assert_eq!(
        list_progress(OperationKind::Delete, Some(&s), "", start, now).state,
        OperationState::Running
    );
    assert_eq!(
        list_progress(
            OperationKind::Rename,
            Some(&s),
            "web1-pre-php83",
            start,
            now
        )
        .state,
        OperationState::Succeeded
    );
    assert_eq!(
        list_progress(OperationKind::Rename, Some(&s), "other", start, now).state,
        OperationState::Running
    );
    assert_eq!(
        list_progress(OperationKind::Rename, None, "x", start, now).state,
        OperationState::Failed
    );
    let late = at("2025-03-11T10:00:00Z");
    assert_eq!(
        list_progress(OperationKind::Delete, Some(&s), "", start, late).state,
        OperationState::Failed
    );
}

#[test]
fn restoring_a_snapshot_of_a_deleted_slice_needs_a_target() {
    let gone =
        item(r#"{"id": 1, "name": "a", "vm_id": 3911, "vm_deleted": "2025-03-01 00:00:00"}"#);
    assert!(matches!(
        source_slice(&gone),
        Err(ProviderError::Invalid {
            field: "target_id",
            ..
        })
    ));
    let alive = item(r#"{"id": 1, "name": "a", "vm_id": 3911, "vm_deleted": null}"#);
    assert_eq!(source_slice(&alive).unwrap(), "3911");
    let unnamed = item(r#"{"id": 1, "name": "a"}"#);
    assert!(matches!(
        source_slice(&unnamed),
        Err(ProviderError::Invalid {
            field: "target_id",
            ..
        })
    ));
}

/// Issue 22 item 7: `progress` below 100 is work in progress even when `in_progress` is unset.
#[test]
fn progress_below_100_is_creating_whatever_in_progress_says() {
    for (progress, creating) in [
        ("null", false),
        ("0", true),
        ("40", true),
        ("\"55%\"", true),
        ("99.5", true),
        ("100", false),
        ("\"100%\"", false),
        ("\"\"", false),
        ("\"copying\"", true),
    ] {
        let json =
            format!(r#"{{"id": 1, "name": "a", "in_progress": null, "progress": {progress}}}"#);
        let r = raw(&json);
        let s = to_domain(decode(&r).unwrap(), r, None);
        let want = if creating {
            SnapshotStatus::Creating
        } else {
            SnapshotStatus::Available
        };
        assert_eq!(s.status, want, "progress {progress}");
        if creating {
            assert_eq!(s.vendor_status, Some(format!("progress:{progress}")));
        }
    }
}
