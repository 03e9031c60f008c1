//! The cache libraries people put in front of a Redis-compatible server,
//! through their own cache APIs, against a three-node cluster of real
//! `gridkv node` processes: redis-py, Flask-Caching, Django's RedisCache,
//! aiocache and dogpile.cache (see `tests/python/cache_libraries.py` and
//! docs/COMPATIBILITY.md).
//!
//! Without the libraries it says so and passes, so the README's test
//! command works on a fresh machine; `.ci/run` installs them and sets
//! `GRIDKV_REQUIRE_CACHE_LIBS=1`, which makes their absence a failure.

// Each test binary compiles the harness whole and uses part of it.
#[allow(dead_code)]
mod common;

use std::path::Path;

use common::Cluster;

const INSTALL: &str = "pip install 'redis>=8' Flask-Caching Django aiocache dogpile.cache";

#[test]
fn cache_libraries_through_their_own_apis() {
    if !common::python_has(
        "redis, flask_caching, django, aiocache, dogpile.cache",
        "GRIDKV_REQUIRE_CACHE_LIBS",
        INSTALL,
    ) {
        return;
    }
    let cluster = Cluster::start(3, &[]);
    let ports: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| n.resp.port().to_string())
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/cache_libraries.py");
    common::run_python(&script, &ports, INSTALL);
}
