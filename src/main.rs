//! The `snapgate` command line: parses arguments and calls into the library.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use snapgate::{app::shutdown_signal, auth, Application, Config};

#[derive(Parser)]
#[command(
    name = "snapgate",
    version,
    about = "One HTTP API in front of five clouds' snapshot APIs"
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
        /// Scopes (repeat or space-separate); default: all four.
        #[arg(long = "scope", num_args = 1..)]
        scopes: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Print the OpenAPI document.
    Openapi,
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => serve(cli.config).await,
        Command::Token {
            tenant,
            scopes,
            ttl,
        } => token(cli.config, &tenant, scopes, ttl),
        Command::Openapi => {
            print!("{}", snapgate::api::openapi::document_json());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("snapgate: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config_path: Option<PathBuf>) -> Result<(), String> {
    snapgate::telemetry::init("info,sqlx=warn");
    let config = load_config(config_path.as_deref())?;
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    println!("export SNAPGATE_URL=http://{}", app.local_addr());
    tracing::info!(addr = %app.local_addr(), "listening");
    app.run_until(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

fn token(
    config_path: Option<PathBuf>,
    tenant: &str,
    scopes: Vec<String>,
    ttl: u64,
) -> Result<(), String> {
    let config = load_config(config_path.as_deref())?;
    let scopes = if scopes.is_empty() {
        auth::all_scopes()
    } else {
        scopes
    };
    let token = auth::mint(&config.auth, tenant, &scopes, ttl).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}
