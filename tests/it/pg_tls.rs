//! The store over TLS: a PostgreSQL this test starts itself (its own data directory, a
//! certificate from its own CA, `hostssl` only, on a free loopback port), so the gateway is
//! shown to speak TLS to it, to verify its certificate when asked, and never to fall back to
//! plaintext.

use std::{path::PathBuf, process::Command, time::Duration};

use snapgate::store::Store;

/// A PostgreSQL server that accepts TLS connections only, stopped when dropped.
struct TlsPostgres {
    child: std::process::Child,
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        // `runuser` stands between this process and the server: stop the server itself.
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The newest PostgreSQL server binaries Debian installed, if any.
fn server_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("postgres").exists())
        .collect();
    found.sort();
    found.pop()
}

/// Runs `program` as the `postgres` user when this test runs as root (the server refuses root).
fn as_postgres(program: &std::path::Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TlsPostgres {
    fn start() -> Option<Self> {
        let Some(bin) = server_bin() else {
            // CI installs PostgreSQL (`.ci/postgres`): there, its absence is a failure.
            assert!(
                std::env::var_os("CI").is_none(),
                "no PostgreSQL server binaries under /usr/lib/postgresql"
            );
            eprintln!("no PostgreSQL server binaries under /usr/lib/postgresql: not run");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // The CA, and the server's certificate for 127.0.0.1 and localhost signed by it.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "snapgate test CA");
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        std::fs::write(root.join("ca.crt"), ca.pem()).unwrap();
        std::fs::write(root.join("server.crt"), server.pem()).unwrap();
        std::fs::write(root.join("server.key"), key.serialize_pem()).unwrap();
        // The server runs as `postgres`: it owns the directory, and its key is private to it.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(root)
            .status();
        let _ = Command::new("chmod")
            .arg("600")
            .arg(root.join("server.key"))
            .status();
        let data = root.join("data");
        let init = as_postgres(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        let port = free_port();
        let child = as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={port}")])
            .args(["-c", &format!("unix_socket_directories={}", root.display())])
            .args(["-c", "ssl=on"])
            .args([
                "-c",
                &format!("ssl_cert_file={}", root.join("server.crt").display()),
            ])
            .args([
                "-c",
                &format!("ssl_key_file={}", root.join("server.key").display()),
            ])
            .args(["-c", "fsync=off"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pg = Self {
            child,
            port,
            bin,
            dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the TLS PostgreSQL never listened"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(pg)
    }

    fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres{query}",
            self.port
        )
    }

    fn ca(&self) -> String {
        self.dir.path().join("ca.crt").display().to_string()
    }
}

#[tokio::test]
async fn the_store_speaks_tls_verifies_the_server_and_never_falls_back_to_plaintext() {
    let Some(pg) = TlsPostgres::start() else {
        return;
    };
    // Verified against the CA, by name: the store opens, migrates and keeps data.
    let verified = pg.url(&format!("?sslmode=verify-full&sslrootcert={}", pg.ca()));
    let store = connect_retrying(&verified).await;
    let page = store.list_accounts("acme").await.unwrap();
    assert!(page.is_empty());
    // Every connection the server has is encrypted (it refuses any other, `hostnossl
    // reject`), and the store's are among them.
    let mut admin = sqlx::postgres::PgConnection::connect_with(
        &snapgate::store::postgres_options(&verified).unwrap(),
    )
    .await
    .unwrap();
    use sqlx::Connection;
    let (tls, all): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE s.ssl), COUNT(*) FROM pg_stat_ssl s \
         JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.backend_type = 'client backend'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(all >= 2, "the store's connections and this one: {all}");
    assert_eq!(tls, all, "{tls} of {all} connections are encrypted");
    admin.close().await.unwrap();
    drop(store);

    // Plaintext is refused by this server: asked for, the store fails to open, naming no
    // password; it never retries without TLS behind the caller's back.
    let plain = pg.url("?sslmode=disable&password=hunter2");
    let refused = snapgate::store::connect(&plain, 2).await;
    let err = refused.err().expect("a plaintext store must not open here");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // A certificate from another CA fails verification.
    let other = tempfile::NamedTempFile::new().unwrap();
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(other.path(), stranger.cert.pem()).unwrap();
    let wrong_ca = pg.url(&format!(
        "?sslmode=verify-full&sslrootcert={}",
        other.path().display()
    ));
    assert!(snapgate::store::connect(&wrong_ca, 2).await.is_err());
}

#[test]
fn a_store_across_a_network_requires_tls_unless_its_url_says_otherwise() {
    use sqlx::postgres::PgSslMode;
    let mode = |url: &str| {
        let options = snapgate::store::postgres_options(url).unwrap();
        format!("{:?}", options.get_ssl_mode())
    };
    let require = format!("{:?}", PgSslMode::Require);
    let prefer = format!("{:?}", PgSslMode::Prefer);
    if std::env::var_os("PGSSLMODE").is_none() {
        assert_eq!(mode("postgres://u@db.internal:5432/snapgate"), require);
        assert_eq!(mode("postgres://u@10.0.0.5/snapgate"), require);
        assert_eq!(mode("postgres://u@127.0.0.1/snapgate"), prefer);
        assert_eq!(mode("postgres://u@localhost/snapgate"), prefer);
        assert_eq!(mode("postgres://u@[::1]/snapgate"), prefer);
    }
    assert_eq!(
        mode("postgres://u@db.internal/snapgate?sslmode=disable"),
        format!("{:?}", PgSslMode::Disable)
    );
    assert_eq!(
        mode("postgres://u@db.internal/snapgate?sslmode=verify-full"),
        format!("{:?}", PgSslMode::VerifyFull)
    );
}

/// The server may still be starting its TLS listener a moment after the port opens.
async fn connect_retrying(url: &str) -> std::sync::Arc<dyn Store> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        match snapgate::store::connect(url, 4).await {
            Ok(store) => return store,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the store never opened over TLS: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test]
async fn an_unreachable_database_is_named_with_its_cause() {
    let port = free_port();
    let url = format!("postgres://snapgate:hunter2@127.0.0.1:{port}/snapgate");
    let err = snapgate::store::connect(&url, 2)
        .await
        .err()
        .expect("nothing listens there");
    let said = err.to_string();
    assert!(said.contains(&format!("127.0.0.1:{port}")), "{said}");
    assert!(said.to_lowercase().contains("refused"), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
}
