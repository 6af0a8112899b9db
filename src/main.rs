//! The `snapgate` command line: parses arguments and calls into the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use snapgate::{app::shutdown_signal, auth, Application, Config};

#[derive(Parser)]
#[command(
    name = "snapgate",
    version,
    about = "One HTTP API in front of every cloud's snapshot API"
)]
struct Cli {
    /// TOML config file (environment variables `SNAPGATE_*` override it).
    #[arg(long, global = true, env = "SNAPGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Mint a development token signed with the configured HS256 secret.
    Token {
        /// Tenant the token acts for.
        #[arg(long)]
        tenant: String,
        /// Scopes (repeat or space-separate): snapshots:read, snapshots:write, accounts:read,
        /// accounts:write, webhooks:read, webhooks:write, policies:read, policies:write;
        /// default: all eight.
        #[arg(long = "scope", num_args = 1..)]
        scopes: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Run every simulated vendor API on one port.
    Simulate {
        /// Address to listen on (port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// How long async vendor work (creates, tickets, actions) takes, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        async_delay_ms: u64,
        /// Lifetime of Oktawave access tokens, in seconds.
        #[arg(long, default_value_t = 3600)]
        token_ttl_secs: u64,
        /// Faults active from the start: JSON `{"koyeb": {"latency_ms": 200}, ...}`.
        #[arg(long)]
        faults: Option<String>,
        /// A reading of undocumented vendor behaviour to play, `NAME[=VALUE]` (repeatable), e.g.
        /// `hyperstack.page_cap=20`, `oktawave.page_base=0`, `koyeb.migrating`; the list is in
        /// the README ("Simulator variants").
        #[arg(long = "variant", value_name = "NAME[=VALUE]")]
        variants: Vec<String>,
    },
    /// Gateway + simulator + one seeded account per provider: the newcomer's command. It makes
    /// its own configuration (in --data-dir): it takes no --config file and no SNAPGATE_*
    /// settings; use `serve` for those.
    Demo {
        /// Gateway address (port 0 picks one; the printed URL is the real one).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the demo keeps its key, secret and database.
        #[arg(long, default_value = snapgate::demo::DATA_DIR)]
        data_dir: PathBuf,
    },
    /// Work on a store directly.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Master key maintenance.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Re-seal every account not under SNAPGATE_MASTER_KEY, opening it with one of
    /// SNAPGATE_PREVIOUS_MASTER_KEYS; safe while gateways serve. Afterwards the previous keys
    /// can be removed.
    Rotate,
}

#[derive(Subcommand)]
enum StoreAction {
    /// Copy every account (still sealed: the same master key opens them), operation and
    /// idempotency record from one store to another, e.g. SQLite to PostgreSQL, and print
    /// the counts. Stop the gateways writing to the source first.
    Copy {
        /// Source store URL (`sqlite://…` or `postgres://…`).
        #[arg(long)]
        from: String,
        /// Target store URL; created and migrated if needed.
        #[arg(long)]
        to: String,
        /// Copy into a target that already holds records (those it has are kept).
        #[arg(long)]
        into_non_empty: bool,
    },
}

async fn keys_rotate(config_path: Option<PathBuf>) -> Result<(), String> {
    let config = load_config(config_path.as_deref())?;
    let sealer = snapgate::store::Sealer::from_base64(config.master_key.as_ref())
        .and_then(|s| s.with_previous(config.previous_master_keys.as_ref()))
        .map_err(|e| e.to_string())?;
    let store = snapgate::store::connect(&config.store.url, 2)
        .await
        .map_err(|e| format!("{}: {e}", snapgate::store::redacted(&config.store.url)))?;
    let done = snapgate::store::rotate(store.as_ref(), &sealer)
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "re-sealed {} accounts and {} webhook secrets under key {} ({} accounts already under \
         it, {} changed meanwhile); the previous keys are no longer needed",
        done.resealed,
        done.webhook_secrets,
        sealer.key_id(),
        done.current,
        done.changed_meanwhile
    );
    Ok(())
}

/// The name of a command that makes its own configuration (and so ignores `--config`).
fn own_configuration(command: &Command) -> Option<&'static str> {
    match command {
        Command::Demo { .. } => Some("demo"),
        Command::Simulate { .. } => Some("simulate"),
        Command::Openapi => Some("openapi"),
        _ => None,
    }
}

async fn store_copy(from: &str, to: &str, into_non_empty: bool) -> Result<(), String> {
    use snapgate::store::{connect, copy, redacted};
    let (shown_from, shown_to) = (redacted(from), redacted(to));
    // A source is read, never made: a mistyped SQLite path would otherwise be created empty
    // and "copied" as nothing.
    if !snapgate::store::is_postgres(from) {
        let path = snapgate::store::sqlite_path(from);
        if !std::path::Path::new(path).is_file() {
            return Err(format!(
                "--from {shown_from}: there is no SQLite database at `{path}`"
            ));
        }
    }
    let source = connect(from, 2)
        .await
        .map_err(|e| format!("{shown_from}: {e}"))?;
    let target = connect(to, 2)
        .await
        .map_err(|e| format!("{shown_to}: {e}"))?;
    let held = source.dump().await.map_err(|e| e.to_string())?.counts();
    let written = copy(source.as_ref(), target.as_ref(), into_non_empty)
        .await
        .map_err(|e| e.to_string())?;
    println!("copied {written} from {shown_from} to {shown_to}");
    if written != held {
        println!("kept what the target already had: the source holds {held}");
    }
    Ok(())
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that make their own configuration refuse a file they would ignore.
    if let (Some(path), Some(name)) = (&cli.config, own_configuration(&cli.command)) {
        eprintln!(
            "snapgate: `{name}` makes its own configuration and would ignore --config {} \
             (or SNAPGATE_CONFIG): use `snapgate serve` with a config file",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve => serve(cli.config).await,
        Command::Token {
            tenant,
            scopes,
            ttl,
        } => token(cli.config, &tenant, scopes, ttl),
        Command::Simulate {
            listen,
            async_delay_ms,
            token_ttl_secs,
            faults,
            variants,
        } => simulate(listen, async_delay_ms, token_ttl_secs, faults, variants).await,
        Command::Demo { listen, data_dir } => {
            snapgate::telemetry::init("warn,snapgate=info");
            snapgate::demo::run(listen, &data_dir)
                .await
                .map_err(|e| e.to_string())
        }
        Command::Openapi => {
            print!("{}", snapgate::api::openapi::document_json());
            Ok(())
        }
        Command::Keys {
            action: KeysAction::Rotate,
        } => {
            snapgate::telemetry::init("warn");
            keys_rotate(cli.config).await
        }
        Command::Store {
            action:
                StoreAction::Copy {
                    from,
                    to,
                    into_non_empty,
                },
        } => {
            snapgate::telemetry::init("warn");
            store_copy(&from, &to, into_non_empty).await
        }
    };
    // Spans still buffered go out before the process ends (no-op when traces are off).
    snapgate::otel::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("snapgate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `snapgate simulate`: the simulated vendors alone, with the faults and variants asked for.
async fn simulate(
    listen: std::net::SocketAddr,
    async_delay_ms: u64,
    token_ttl_secs: u64,
    faults: Option<String>,
    variants: Vec<String>,
) -> Result<(), String> {
    snapgate::telemetry::init("warn");
    let faults = match faults {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| format!("--faults is not a vendor → fault JSON map: {e}"))?,
        None => Default::default(),
    };
    let mut played = snapgate::simulator::Variants::default();
    variants
        .iter()
        .try_for_each(|spec| played.apply(spec))
        .map_err(|e| format!("--variant: {e}"))?;
    let config = snapgate::simulator::SimulatorConfig {
        async_delay: std::time::Duration::from_millis(async_delay_ms),
        token_ttl: std::time::Duration::from_secs(token_ttl_secs),
        seed: true,
        faults,
        variants: played,
    };
    snapgate::demo::simulate(listen, config)
        .await
        .map_err(|e| e.to_string())
}

async fn serve(config_path: Option<PathBuf>) -> Result<(), String> {
    snapgate::telemetry::init("info,sqlx=warn");
    let config = load_config(config_path.as_deref())?;
    // The store URL as logs may show it: never its password.
    let store = snapgate::store::redacted(&config.store.url);
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    let shutdown = shutdown_signal();
    println!("export SNAPGATE_URL=http://{}", app.local_addr());
    tracing::info!(addr = %app.local_addr(), %store, "listening");
    app.run_until(shutdown).await.map_err(|e| e.to_string())
}

fn token(
    config_path: Option<PathBuf>,
    tenant: &str,
    scopes: Vec<String>,
    ttl: u64,
) -> Result<(), String> {
    let mut config = load_config(config_path.as_deref())?;
    if config.auth.hs256_secret.is_none() {
        // Run where `snapgate demo` ran: mint tokens that demo accepts.
        let dir = std::path::Path::new(snapgate::demo::DATA_DIR);
        if let Some(secrets) = snapgate::demo::load_secrets(dir).map_err(|e| e.to_string())? {
            config.auth.hs256_secret = Some(secrets.hs256_secret.into());
        }
    }
    let scopes = if scopes.is_empty() {
        auth::all_scopes()
    } else {
        scopes
    };
    let token = auth::mint(&config.auth, tenant, &scopes, ttl).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}
