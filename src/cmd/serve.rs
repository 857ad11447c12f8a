//! `ctxplane serve`: the watcher-driven indexer and the plane behind the
//! HTTP API (and MCP over streamable HTTP at `/mcp`), until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use plane::{PassKind, Plane, Profile, Settings};
use registry::RegistryStore;

use crate::cli::ServeArgs;

pub fn serve(args: ServeArgs, s: &Settings, store: RegistryStore) -> anyhow::Result<std::process::ExitCode> {
    if args.read_only {
        let plane = Arc::new(Plane::open(s.clone(), store, Profile::replica())?);
        return serve_plane(plane, args, None);
    }
    let plane = Arc::new(Plane::open(s.clone(), store, Profile::server(!args.no_embed))?);
    if let Some(o) = plane.update(None, PassKind::Full, &mut plane::Quiet)? {
        tracing::info!(
            chunks = o.report.total_chunks,
            ms = o.elapsed_ms,
            "initial pass done"
        );
    }
    serve_plane(plane, args, None)
}

/// Fills in vectors behind the lexical index, one step at a time (so a
/// pass or a revocation never waits long for the ingest lock), until
/// `stop`; once complete it sleeps until the next pass may have added
/// chunks. Queries are answered throughout, lexically until the first
/// vectors exist, then hybrid with the coverage reported.
pub(crate) fn spawn_filler(plane: &Arc<Plane>, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    let (plane, stop) = (plane.clone(), stop.clone());
    std::thread::spawn(move || {
        let pause = |ms: u64| {
            for _ in 0..ms / 50 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        };
        // Every query session is made before queries overlap: making one
        // on demand would add a model load to that query's wait.
        if let Ok(model) = plane.model()
            && let Err(e) = model.warm_interactive()
        {
            tracing::warn!(error = %e, "could not make every query session; queries share the ones there are");
        }
        let mut idle_since: Option<u64> = None;
        while !stop.load(Ordering::Relaxed) {
            // Nothing is embedded during an emergency stop; after a resume
            // the filling goes on where it was.
            if plane.stopped().is_some() {
                pause(1_000);
                continue;
            }
            if idle_since == Some(plane.passes()) {
                pause(500);
                continue;
            }
            let passes = plane.passes();
            match plane.fill_vectors() {
                Ok(0) => {
                    if idle_since.is_none() {
                        tracing::info!("vectors complete");
                    }
                    idle_since = Some(passes);
                }
                Ok(remaining) => {
                    idle_since = None;
                    tracing::debug!(remaining, "filling vectors");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "building vectors failed; retrying");
                    pause(5_000);
                }
            }
        }
    })
}

/// Serves `plane` until SIGINT/SIGTERM; `ready` is called with the bound
/// address once it listens. In-flight requests and the current indexing
/// pass finish before it returns.
pub(crate) fn serve_plane(
    plane: Arc<Plane>,
    args: ServeArgs,
    ready: Option<Box<dyn FnOnce(SocketAddr) + Send>>,
) -> anyhow::Result<std::process::ExitCode> {
    // Open the retriever (and the model) now, not on the first request.
    // A replica whose Qdrant (or its collection) is not there yet still
    // listens: not ready, answering 503 until a request finds it.
    match plane.retriever() {
        Ok(_) => {}
        Err(e @ plane::Error::Unavailable { .. }) => {
            tracing::warn!(error = %e, "serving without the shared index until it can be read");
        }
        Err(e) => return Err(e.into()),
    }
    let stop = Arc::new(AtomicBool::new(false));
    // A replica writes no index: nothing to watch or fill, only the query
    // sessions to make.
    let read_only = plane.profile().read_only;
    let watcher = crate::watch::spawn(&plane, args.no_watch || read_only, &stop)?;
    let filler = if read_only {
        if let Ok(model) = plane.model()
            && let Err(e) = model.warm_interactive()
        {
            tracing::warn!(error = %e, "could not make every query session; queries share the ones there are");
        }
        None
    } else {
        Some(spawn_filler(&plane, &stop))
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "ctxplane serving (Ctrl-C to stop)");
        eprintln!("ctxplane serving on http://{addr} (Ctrl-C to stop)");
        if let Some(f) = ready {
            f(addr);
        }
        let mcp = crate::mcp::http_service(plane.clone(), addr);
        let bounded = crate::http::listener::Bounded::new(
            listener,
            crate::http::listener::Bounds {
                max_connections: args.max_connections as usize,
                idle: std::time::Duration::from_secs(args.idle_timeout_secs),
                head: std::time::Duration::from_secs(args.header_timeout_secs),
            },
        );
        axum::serve(bounded, crate::http::router(plane.clone(), Some(mcp)))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving")
    });
    crate::watch::stop(&stop, watcher);
    if let Some(f) = filler {
        let _ = f.join();
    }
    result?;
    tracing::info!("ctxplane stopped");
    Ok(std::process::ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
