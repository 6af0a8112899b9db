//! Builds the whole application from a [`Config`]: `main` and every test go through here.

use std::{future::Future, net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;

use crate::{
    api::{self, AppState},
    auth::{AuthConfigError, Authenticator},
    config::Config,
    providers::Registry,
    store::{self, SealError, Sealer, StoreError},
    upstream::Upstream,
};

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    MasterKey(#[from] SealError),
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A built, bound, not yet running gateway.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
}

impl Application {
    /// Checks the config, opens the store, binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let sealer = Sealer::from_base64(config.master_key.as_ref())?;
        let auth = Authenticator::from_config(&config.auth)?;
        let store = store::connect(&config.store.url).await?;
        let addr = config.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let state = AppState {
            auth: Arc::new(auth),
            store,
            sealer: Arc::new(sealer),
            registry: Registry::new(&config.providers, Upstream::new(config.upstream)),
            config: Arc::new(config),
            accounts: Arc::default(),
        };
        Ok(Self {
            listener,
            router: api::router(state.clone()),
            state,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.server.listen)
    }

    /// The shared state, for in-process callers such as the demo's seeding.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
