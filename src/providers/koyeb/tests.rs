//! Unit tests of the koyeb adapter: status mapping, wire decoding, input rules.
use super::*;

fn raw(s: &str) -> Box<RawValue> {
    RawValue::from_string(s.to_owned()).unwrap()
}

const GET: &str = r#"{"snapshot":{"id":"5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e","name":"pg-data-before-migration","size":10,"created_at":"2025-03-11T09:15:42.221274Z","updated_at":"2025-03-11T09:17:03.518802Z","organization_id":"c402bcad-d06d-4fd6-8af2-08b790c0e249","parent_volume_id":"8f6e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b","region":"fra","status":"SNAPSHOT_STATUS_AVAILABLE","type":"SNAPSHOT_TYPE_LOCAL"}}"#;

#[test]
fn statuses_map_per_the_summary_table() {
    assert_eq!(
        map_status("SNAPSHOT_STATUS_CREATING"),
        SnapshotStatus::Creating
    );
    // Data moving to cold storage is still there: available (a create waits for AVAILABLE).
    assert_eq!(
        map_status("SNAPSHOT_STATUS_MIGRATING"),
        SnapshotStatus::Available
    );
    assert_eq!(
        map_status("SNAPSHOT_STATUS_AVAILABLE"),
        SnapshotStatus::Available
    );
    assert_eq!(
        map_status("SNAPSHOT_STATUS_DELETING"),
        SnapshotStatus::Deleting
    );
    assert_eq!(
        map_status("SNAPSHOT_STATUS_DELETED"),
        SnapshotStatus::Deleted
    );
    assert_eq!(
        map_status("SNAPSHOT_STATUS_INVALID"),
        SnapshotStatus::Unknown
    );
    assert_eq!(
        map_status("SNAPSHOT_STATUS_NEW_THING"),
        SnapshotStatus::Unknown
    );
}

#[test]
fn the_get_fixture_maps_to_a_normalized_snapshot() {
    let e: Envelope = serde_json::from_str(GET).unwrap();
    let s = to_domain(e.snapshot).unwrap();
    assert_eq!(s.native_id, "5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e");
    assert_eq!(s.name.as_deref(), Some("pg-data-before-migration"));
    assert_eq!(s.description, None);
    assert_eq!(s.status, SnapshotStatus::Available);
    assert_eq!(
        s.vendor_status.as_deref(),
        Some("SNAPSHOT_STATUS_AVAILABLE")
    );
    assert_eq!(s.size_gb, Some(10.0));
    assert_eq!(
        s.created_at.unwrap().to_rfc3339(),
        "2025-03-11T09:15:42.221274+00:00"
    );
    let src = s.source.unwrap();
    assert_eq!(
        (src.kind, src.id.as_str()),
        (SourceKind::Volume, "8f6e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b")
    );
    assert_eq!(s.region.as_deref(), Some("fra"));
    assert!(s.vendor.unwrap().get().contains("SNAPSHOT_TYPE_LOCAL"));
}

#[test]
fn deleted_at_absent_null_or_zero_means_not_deleted() {
    for deleted_at in [
        "",
        r#","deleted_at":null"#,
        r#","deleted_at":"0001-01-01T00:00:00Z""#,
    ] {
        let s = to_domain(raw(&format!(
            r#"{{"id":"x","status":"SNAPSHOT_STATUS_INVALID"{deleted_at}}}"#
        )))
        .unwrap();
        assert_eq!(s.status, SnapshotStatus::Unknown, "{deleted_at}");
    }
    let s = to_domain(raw(
        r#"{"id":"x","deleted_at":"2025-03-20T10:00:04.332100Z"}"#,
    ))
    .unwrap();
    assert_eq!(s.status, SnapshotStatus::Deleted);
    let s = to_domain(raw(r#"{"id":"x","status":"SNAPSHOT_STATUS_DELETED","deleted_at":"2025-03-20T10:00:04.332100Z"}"#)).unwrap();
    assert_eq!(s.status, SnapshotStatus::Deleted);
}

#[test]
fn sizes_arrive_as_numbers_or_strings_and_zero_is_unknown() {
    assert_eq!(
        to_domain(raw(r#"{"id":"x","size":"20"}"#)).unwrap().size_gb,
        Some(20.0)
    );
    assert_eq!(
        to_domain(raw(r#"{"id":"x","size":0}"#)).unwrap().size_gb,
        None
    );
    assert_eq!(to_domain(raw(r#"{"id":"x"}"#)).unwrap().size_gb, None);
}

#[test]
fn every_response_fixture_decodes() {
    let list = r#"{"snapshots":[{"id":"5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e","name":"pg-data-before-migration","size":10,"created_at":"2025-03-11T09:15:42.221274Z","parent_volume_id":"8f6e2b4a-3c1d-4e5f-9a7b-0c2d4e6f8a1b","region":"fra","status":"SNAPSHOT_STATUS_AVAILABLE","type":"SNAPSHOT_TYPE_LOCAL"},{"id":"a7c9e1f3-2b4d-4c6e-8f0a-1c3e5a7b9d2f","name":"uploads-weekly","size":20,"created_at":"2025-03-14T22:00:01.004511Z","parent_volume_id":"1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809","region":"was","status":"SNAPSHOT_STATUS_CREATING","type":"SNAPSHOT_TYPE_LOCAL"}],"limit":20,"offset":0,"has_next":false}"#;
    let page: ListPage = serde_json::from_str(list).unwrap();
    assert_eq!(page.has_next, Some(false));
    let statuses: Vec<_> = page
        .snapshots
        .into_iter()
        .map(|r| to_domain(r).unwrap().status)
        .collect();
    assert_eq!(
        statuses,
        [SnapshotStatus::Available, SnapshotStatus::Creating]
    );

    let empty: ListPage =
        serde_json::from_str(r#"{"snapshots":[],"limit":20,"offset":40,"has_next":false}"#)
            .unwrap();
    assert!(empty.snapshots.is_empty());
    // proto3 may drop every zero value.
    let bare: ListPage = serde_json::from_str("{}").unwrap();
    assert!(bare.snapshots.is_empty() && bare.has_next.is_none());

    let deleted = r#"{"snapshot":{"id":"5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e","name":"pg-data-before-migration","size":10,"status":"SNAPSHOT_STATUS_DELETED","type":"SNAPSHOT_TYPE_LOCAL","deleted_at":"2025-03-20T10:00:04.332100Z"}}"#;
    let e: Envelope = serde_json::from_str(deleted).unwrap();
    assert_eq!(
        to_domain(e.snapshot).unwrap().status,
        SnapshotStatus::Deleted
    );

    let volume = r#"{"volume":{"id":"4d5e6f70-8192-43a4-b5c6-d7e8f9a0b1c2","name":"pg-data-restored","snapshot_id":"5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e","region":"fra","read_only":false,"max_size":10,"cur_size":0,"status":"PERSISTENT_VOLUME_STATUS_DETACHED","backing_store":"PERSISTENT_VOLUME_BACKING_STORE_LOCAL_BLK"}}"#;
    let v: VolumeReply = serde_json::from_str(volume).unwrap();
    let v = v.volume.unwrap();
    assert_eq!(
        (v.id.as_str(), v.name.as_deref()),
        (
            "4d5e6f70-8192-43a4-b5c6-d7e8f9a0b1c2",
            Some("pg-data-restored")
        )
    );
}

#[test]
fn error_bodies_of_every_documented_shape_give_a_message() {
    let with_fields = br#"{"status":400,"code":"invalid_argument","message":"Invalid argument","fields":[{"field":"parent_volume_id","description":"cannot be blank"}]}"#;
    assert_eq!(
        error_message(with_fields).unwrap(),
        "Invalid argument (invalid_argument): parent_volume_id cannot be blank"
    );
    assert_eq!(
        error_message(
            br#"{"status":404,"code":"unknown_resource","message":"Snapshot not found"}"#
        )
        .unwrap(),
        "Snapshot not found (unknown_resource)"
    );
    assert_eq!(
        error_message(br#"{"code":5,"message":"snapshot not found","details":[]}"#).unwrap(),
        "snapshot not found"
    );
    assert_eq!(
        error_message(b"upstream connect error"),
        Some("upstream connect error".to_owned())
    );
    assert_eq!(error_message(b"<html>bad gateway</html>"), None);
}

#[test]
fn only_uuids_can_be_koyeb_ids() {
    assert!(uuid("5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e").is_ok());
    for bad in [
        "",
        "5e0f3c2a",
        "5e0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1",
        "5e0f3c2a_9b8d-4a71-8c6e-2d4f6a8b0c1e",
        "zz0f3c2a-9b8d-4a71-8c6e-2d4f6a8b0c1e",
    ] {
        assert_eq!(uuid(bad), Err(ProviderError::NotFound), "{bad}");
    }
}

#[test]
fn a_restored_volume_is_named_after_the_snapshot_by_default() {
    assert_eq!(
        default_volume_name(Some("pg-data"), "id"),
        "pg-data-restore"
    );
    assert_eq!(default_volume_name(None, "5e0f"), "5e0f-restore");
    assert_eq!(
        default_volume_name(Some(&"x".repeat(400)), "id")
            .chars()
            .count(),
        MAX_NAME
    );
}
