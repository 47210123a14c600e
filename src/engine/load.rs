//! Loading an image archive into the engine (what `docker load` does), and reading an image's id.

use std::io::Read;

use bollard::query_parameters::ImportImageOptionsBuilder;
use futures_util::StreamExt;

use super::engine_err;
use crate::error::{Error, Result};

/// Stream `reader` (an image tar, gzip- or otherwise compressed as the engine accepts) to the
/// engine's `/images/load`; returns the engine's messages (`Loaded image: ...`).
pub async fn load_image(
    docker: &bollard::Docker,
    mut reader: Box<dyn Read + Send>,
) -> Result<Vec<String>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    // The reader is blocking (files, another engine's stream): a thread feeds the request body.
    // A read error goes into the body as an error, which aborts the request: the engine sees a
    // broken upload, not a short archive that might load.
    let feeder = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut n = 0u64;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            let k = match reader.read(&mut buf) {
                Ok(k) => k,
                Err(e) => {
                    let kept = std::io::Error::new(e.kind(), e.to_string());
                    let _ = tx.blocking_send(Err(e));
                    return Err(kept);
                }
            };
            if k == 0 {
                return Ok(n);
            }
            buf.truncate(k);
            n += k as u64;
            if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                return Ok(n);
            }
        }
    });
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let mut stream = docker.import_image(
        ImportImageOptionsBuilder::new().quiet(true).build(),
        bollard::body_try_stream(body),
        None,
    );
    let mut messages = Vec::new();
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(s) = info.stream {
                    messages.extend(s.lines().map(str::to_owned).filter(|l| !l.is_empty()));
                }
                if let Some(e) = info.error_detail.and_then(|d| d.message) {
                    failure.get_or_insert(e);
                }
            }
            Err(e) => {
                failure.get_or_insert(e.to_string());
            }
        }
    }
    let fed = feeder.join().expect("feeder thread does not panic");
    // The reader's own error first: it is why the upload broke.
    fed.map_err(|e| Error::io("read", "<image archive>", e))?;
    if let Some(e) = failure {
        return Err(engine_err("load the image archive", e));
    }
    Ok(messages)
}
