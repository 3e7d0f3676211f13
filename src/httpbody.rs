//! Reading an HTTP response body with a size limit, chunk by chunk, so a server that sends
//! far more than expected costs at most the limit. Shared by the ComfyUI client, the web
//! sources and the model providers.

/// The whole body, or `Err(size)` as soon as it would pass `limit` bytes (the size reached).
pub async fn read_capped(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Result<Vec<u8>, usize>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(Err(body.len() + chunk.len()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Ok(body))
}
