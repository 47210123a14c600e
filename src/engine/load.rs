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
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    // The reader is blocking (files): a thread feeds the request body.
    let feeder = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut n = 0u64;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            let k = reader.read(&mut buf)?;
            if k == 0 {
                return Ok(n);
            }
            buf.truncate(k);
            n += k as u64;
            if tx.blocking_send(bytes::Bytes::from(buf)).is_err() {
                return Ok(n);
            }
        }
    });
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let mut stream = docker.import_image(
        ImportImageOptionsBuilder::new().quiet(true).build(),
        bollard::body_stream(body),
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
    if let Some(e) = failure {
        return Err(engine_err("load the image archive", e));
    }
    fed.map_err(|e| Error::io("read", "<image archive>", e))?;
    Ok(messages)
}
