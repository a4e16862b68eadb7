//! Builds the application from configuration: keys, database, migrations, the bootstrap admin
//! and the bound HTTP server. Used by `gmp serve` and by the tests.

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::db::repo::job_leases;
use crate::http::tls;
use crate::services::{checkins, served_audit};
use crate::state::AppState;
use crate::{db, http, jobs, services};
use actix_web::{HttpServer, web};
use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::Ordering;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("cannot create the platform admin: {0}")]
    Bootstrap(crate::error::ApiError),
    #[error("cannot listen on {bind}: {source}")]
    Bind { bind: String, source: std::io::Error },
    #[error("cannot start the scheduled jobs: {0}")]
    Jobs(#[from] tokio_cron_scheduler::JobSchedulerError),
    #[error("TLS: {0}")]
    Tls(String),
}

/// A server bound to its port, with its scheduled jobs started.
pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    state: web::Data<AppState>,
    scheduler: tokio_cron_scheduler::JobScheduler,
    /// This replica's name on job leases.
    holder: String,
    /// The `/metrics` listener and its port, when `metrics_bind` is set.
    metrics: Option<(actix_web::dev::Server, u16)>,
    /// Reloads the TLS certificate on SIGHUP, when TLS is on.
    tls_reload: Option<tokio::task::JoinHandle<()>>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Clock::system()).await
    }

    /// `build` with the clock the services and jobs go by (tests pass a manual one).
    pub async fn build_with_clock(config: Config, clock: Clock) -> Result<Self, StartupError> {
        let keys = config.load_keys()?;
        config.check_previous_master_keys()?;
        let certificates = match config.tls_files()? {
            Some((cert, key)) => Some(tls::CertificateFiles::load(cert, key).map_err(StartupError::Tls)?),
            None => None,
        };
        if config.database_url.is_none() {
            config.ensure_data_dir()?;
        }
        let db = db::connect(&config.database_url(), config.database_max_connections).await?;
        db::migrate(&db).await?;
        if let Some(admin) = services::bootstrap::ensure_platform_admin(&db, &config, clock.now())
            .await
            .map_err(StartupError::Bootstrap)?
        {
            announce_bootstrap_admin(&admin);
        }

        let bind = config.bind.clone();
        let bind_error = |source| StartupError::Bind {
            bind: bind.clone(),
            source,
        };
        let listener = TcpListener::bind(&config.bind).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let metrics_listener = match &config.metrics_bind {
            Some(bind) => {
                let error = |source| StartupError::Bind {
                    bind: bind.clone(),
                    source,
                };
                let listener = TcpListener::bind(bind).map_err(error)?;
                let port = listener.local_addr().map_err(error)?.port();
                Some((listener, port))
            }
            None => None,
        };
        let shutdown_timeout = config.shutdown_timeout_seconds;
        let workers = config.workers;
        let state = web::Data::new(AppState::new(db, config, keys, clock));
        // Pulls are answered from memory only while this replica hears every change.
        db::changes::subscribe(&state.db, state.directory.clone());

        let app_state = state.clone();
        let mut server = HttpServer::new(move || http::app(app_state.clone()))
            .disable_signals()
            .shutdown_timeout(shutdown_timeout);
        if let Some(workers) = workers {
            server = server.workers(workers.max(1));
        }
        let server = match &certificates {
            Some(certificates) => {
                let tls = tls::server_config(certificates.clone()).map_err(StartupError::Tls)?;
                server.listen_rustls_0_23(listener, tls)
            }
            None => server.listen(listener),
        }
        .map_err(bind_error)?
        .run();
        let tls_reload = match certificates {
            Some(certificates) => Some(
                tls::reload_on_hangup(certificates)
                    .map_err(|e| StartupError::Tls(format!("cannot listen for SIGHUP: {e}")))?,
            ),
            None => None,
        };
        let metrics = match metrics_listener {
            Some((listener, metrics_port)) => {
                let metrics_state = state.clone();
                let server = HttpServer::new(move || http::metrics::app(metrics_state.clone()))
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(shutdown_timeout)
                    .listen(listener)
                    .map_err(|source| StartupError::Bind {
                        bind: format!("metrics port {metrics_port}"),
                        source,
                    })?
                    .run();
                tracing::info!(metrics_port, "serving metrics");
                Some((server, metrics_port))
            }
            None => None,
        };
        let holder = format!("gmp-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let scheduler = jobs::start(state.get_ref().clone(), holder.clone()).await?;
        tracing::info!(port, "listening");
        Ok(Self {
            server,
            port,
            state,
            scheduler,
            holder,
            metrics,
            tls_reload,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `/metrics` listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves. Then: `/readyz` starts failing, the server stops
    /// accepting connections and lets in-flight requests finish (up to
    /// `shutdown_timeout_seconds`), the jobs stop, and buffered check-ins are written.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let handle = self.server.handle();
        // The server runs as its own task: stopping it needs the server future to keep being
        // polled while `stop` waits for in-flight requests.
        let mut server = tokio::spawn(self.server);
        let metrics = self.metrics.map(|(server, _)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        tokio::select! {
            result = &mut server => return result.map_err(std::io::Error::other)?,
            () = shutdown => tracing::info!("shutting down: finishing in-flight requests"),
        }
        self.state.draining.store(true, Ordering::Relaxed);
        handle.stop(true).await;
        let result = server.await.map_err(std::io::Error::other)?;
        if let Some(reload) = self.tls_reload {
            reload.abort();
        }
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            task.await.ok();
        }
        if let Err(error) = self.scheduler.shutdown().await {
            tracing::warn!(%error, "the job scheduler did not stop cleanly");
        }
        // The pool's connections were opened on the HTTP workers' runtimes, which have stopped:
        // the last writes go through a connection of this runtime.
        self.state.db.clone().close().await.ok();
        match db::connect(&self.state.config.database_url(), 1).await {
            Ok(last) => {
                // Another replica can take over a job this one was running at once.
                if let Err(error) = job_leases::release_all(&last, &self.holder).await {
                    tracing::warn!(%error, "could not release the job leases");
                }
                match checkins::flush_through(&self.state, &last).await {
                    Ok(flushed) => tracing::info!(flushed, "check-ins written"),
                    Err(error) => tracing::error!(error = ?error, "could not write the last check-ins"),
                }
                match served_audit::flush_through(&self.state, &last).await {
                    Ok(flushed) => tracing::info!(flushed, "served-field audit written"),
                    Err(error) => {
                        tracing::error!(error = ?error, "could not write the last served-field audit")
                    }
                }
                last.close().await.ok();
            }
            Err(error) => tracing::error!(%error, "could not reconnect to write the last check-ins"),
        }
        tracing::info!("stopped");
        result
    }
}

/// Prints the first admin's credentials once, to stderr and not to the log, so a generated
/// password does not end up in a log aggregator.
fn announce_bootstrap_admin(admin: &services::bootstrap::BootstrapAdmin) {
    tracing::info!(email = %admin.email, "created the platform admin");
    if let Some(password) = &admin.generated_password {
        eprintln!(
            "\n  GMP first start: created the platform admin\n    email:    {}\n    password: {}\n  \
             Sign in at / (the web UI) or POST /api/v1/auth/login, and change it at\n    \
             POST /api/v1/me/password.\n  \
             This password is shown only this once.\n",
            admin.email, password
        );
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
