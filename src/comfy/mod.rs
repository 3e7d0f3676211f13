//! Everything that talks to ComfyUI: the pooled HTTP client with its circuit breaker and retry
//! budget, the WebSocket event stream, install and port discovery, and ComfyUI's API types.
//! Nothing else in the crate opens a connection to ComfyUI (DESIGN rule 5).

use std::sync::Arc;

use url::Url;

/// The TLS settings for `https://` and `wss://` ComfyUI addresses (reverse proxies, remote
/// boxes): rustls with the ring provider and the operating system's certificate store. Built
/// once per client, never installed process-wide. ComfyUI speaks HTTP/1.1 only.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The WebSocket address for `base` (`http` → `ws`, `https` → `wss`, base path kept), with
/// the `clientId` that routes a prompt's events to this socket.
pub fn ws_url(base: &Url, client_id: &str) -> Url {
    let mut url = base.clone();
    let scheme = if base.scheme() == "https" { "wss" } else { "ws" };
    // Only http(s) URLs reach here (config validates), and ws/wss are valid swaps for them.
    let _ = url.set_scheme(scheme);
    let path = format!("{}ws", url.path());
    url.set_path(&path);
    url.query_pairs_mut().clear().append_pair("clientId", client_id);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_keeps_the_base_path_and_swaps_the_scheme() {
        let base = Url::parse("https://proxy.example/comfy/").expect("url");
        assert_eq!(
            ws_url(&base, "abc").as_str(),
            "wss://proxy.example/comfy/ws?clientId=abc"
        );
        let base = Url::parse("http://127.0.0.1:8188/").expect("url");
        assert_eq!(
            ws_url(&base, "x y").as_str(),
            "ws://127.0.0.1:8188/ws?clientId=x+y"
        );
    }

    #[test]
    fn tls_config_builds_without_a_process_wide_provider() {
        let config = tls_config().expect("tls config");
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
