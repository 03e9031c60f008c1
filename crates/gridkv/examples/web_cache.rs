//! A web service that embeds a GridKV node and caches its responses.
//!
//! `GET /price/{item}` answers from the cache when it can and otherwise
//! computes the answer (a slow call, standing in for a database or another
//! service), caching it for 30 s. Run two copies pointed at each other and
//! a price computed by one is served from the cache by the other.
//!
//! ```sh
//! cargo run -p gridkv --example web_cache -- 127.0.0.1:3000 127.0.0.1:7000
//! cargo run -p gridkv --example web_cache -- 127.0.0.1:3001 127.0.0.1:7001 127.0.0.1:7000
//! curl -i localhost:3000/price/apple   # x-cache: miss, after 200 ms
//! curl -i localhost:3001/price/apple   # x-cache: hit
//! ```
//!
//! Arguments: the HTTP address, the node's cluster address, then seeds.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use gridkv::{GridKv, WriteOptions};

/// How long a computed price stays cached.
const FRESH_FOR: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let http = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let cluster = args.next().unwrap_or_else(|| "127.0.0.1:7000".into());
    let seeds: Vec<String> = args.collect();

    let id = format!("web-{}", cluster.replace([':', '.'], "-"));
    let node = GridKv::start(GridKv::builder(id).listen(cluster).seeds(seeds).build()?).await?;
    node.ready().await?;

    let app = Router::new()
        .route("/price/{item}", get(price))
        .with_state(node.clone());
    let listener = tokio::net::TcpListener::bind(&http).await?;
    println!("serving http://{http}/price/{{item}}; Ctrl-C stops");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // Leave the cluster gracefully, so peers do not wait to suspect us.
    node.shutdown().await;
    Ok(())
}

async fn price(
    State(node): State<GridKv>,
    Path(item): Path<String>,
) -> Result<(HeaderMap, String), (StatusCode, String)> {
    let key = format!("price:{item}");
    let unavailable = |e: gridkv::Error| (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    let mut headers = HeaderMap::new();
    if let Some(cached) = node.get(&key).await.map_err(unavailable)? {
        headers.insert("x-cache", HeaderValue::from_static("hit"));
        return Ok((headers, String::from_utf8_lossy(&cached).into_owned()));
    }
    let computed = slow_price(&item).await;
    // A failed cache write costs a recomputation later, not this answer.
    let fresh = WriteOptions::default().ttl(FRESH_FOR);
    if let Err(e) = node.set_opts(&key, computed.clone(), fresh).await {
        eprintln!("caching {key}: {e}");
    }
    headers.insert("x-cache", HeaderValue::from_static("miss"));
    Ok((headers, computed))
}

/// Stands in for the expensive call a cache saves.
async fn slow_price(item: &str) -> String {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cents: u32 = item.bytes().map(u32::from).sum();
    format!("{item}: {}.{:02}\n", cents / 100, cents % 100)
}
