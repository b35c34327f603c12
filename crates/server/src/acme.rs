//! Certificates from an ACME CA (Let's Encrypt by default) over TLS-ALPN-01 on the listen
//! port. rustls-acme runs the protocol: the account, the order, the challenge certificate,
//! renewal at two thirds of a certificate's life, and the cache directory that keeps the
//! account key and the certificate between runs (a restart deploys the cached certificate
//! without asking the CA). This module configures it and polls its state machine in a task,
//! logging and counting what happens; `tls.rs` sends `acme-tls/1` handshakes to its
//! challenge configuration and every other handshake to its certificate.

use std::fs;
use std::io;
use std::sync::Arc;

use futures_util::StreamExt;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::ResolvesServerCert;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_acme::caches::DirCache;
use rustls_acme::{AcmeState, EventOk};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::AcmeConfig;
use crate::tls::TlsError;
use crate::AppState;

/// The ACME state machine for our domains, until its task takes it.
pub(crate) struct Acme {
    state: AcmeState<io::Error>,
}

impl Acme {
    /// Checks the settings that can be checked before talking to the CA: the directory's
    /// trusted roots and the cache directory.
    pub(crate) fn new(
        config: &AcmeConfig,
        provider: Arc<CryptoProvider>,
    ) -> Result<Acme, TlsError> {
        let roots = match &config.directory_ca {
            Some(path) => {
                let mut roots = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|source| TlsError::Read {
                        path: path.clone(),
                        source,
                    })?;
                let (_, unusable) = roots.add_parsable_certificates(certs);
                if roots.is_empty() || unusable > 0 {
                    return Err(TlsError::NoCertificate(path.clone()));
                }
                roots
            }
            None => webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect(),
        };
        fs::create_dir_all(&config.cache).map_err(|source| TlsError::Cache {
            path: config.cache.clone(),
            source,
        })?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let state =
            rustls_acme::AcmeConfig::new_with_client_config(&config.domains, Arc::new(client))
                .contact(config.emails.iter().map(|email| format!("mailto:{email}")))
                .directory(&config.directory)
                .cache(DirCache::new(config.cache.clone()))
                .state();
        Ok(Acme { state })
    }

    /// The certificate for ordinary handshakes: none until the first is deployed.
    pub(crate) fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        self.state.resolver()
    }

    /// The configuration that answers a validator's `acme-tls/1` handshake with the
    /// challenge certificate of the authorization in progress.
    pub(crate) fn challenge_config(&self, provider: Arc<CryptoProvider>) -> Arc<ServerConfig> {
        self.state.challenge_rustls_config_with_provider(provider)
    }

    /// Drives orders and renewals until `shutdown`. Errors are retried by rustls-acme with
    /// a growing backoff; each is logged and counted.
    pub(crate) async fn run(mut self, state: AppState, shutdown: CancellationToken) {
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                event = self.state.next() => event,
            };
            match event {
                Some(Ok(done)) => {
                    if matches!(done, EventOk::DeployedCachedCert | EventOk::DeployedNewCert) {
                        state.metrics.certificate_load(true);
                    }
                    info!(event = ?done, "acme");
                }
                Some(Err(error)) => {
                    state.metrics.certificate_load(false);
                    error!(%error, "acme: no new certificate this time; retrying with backoff");
                }
                None => return,
            }
        }
    }
}
