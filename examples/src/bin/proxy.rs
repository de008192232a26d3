//! `proxy`: weir's migrating PostgreSQL proxy on real sockets. `proxy --help` lists the flags.

use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpStream;
use weir_examples::proxy_cli::{self, CliError, Options};
use weir_tokio::proxy::{Proxy, ProxyConfig, RebalanceConfig};

fn main() -> ExitCode {
    let options = match proxy_cli::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(CliError::Help) => {
            println!("{}", proxy_cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}", proxy_cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let level = if options.quiet {
        tracing::Level::WARN
    } else {
        tracing::Level::INFO
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    for &backend in &options.backends {
        let connect = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(backend));
        match connect.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("backend {backend} is unreachable: {e}")),
            Err(_) => return Err(format!("backend {backend} is unreachable: timed out")),
        }
    }
    let mut config = ProxyConfig::new(options.backends.clone());
    config.transfer = weir::transfer::Config::with_dialect(options.dialect.clone());
    config.max_idle_per_backend = options.max_idle_per_backend;
    config.login_timeout = options.login_timeout;
    config.max_client_connections = options.max_client_connections;
    config.max_buffered_per_direction = options.max_buffered_per_direction;
    config.rebalance = options.rebalance.map(|interval| RebalanceConfig {
        interval,
        ..RebalanceConfig::default()
    });
    let proxy = Proxy::bind(options.listen, config)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    println!(
        "weir proxy on {}, backends {:?}",
        proxy.local_addr(),
        options.backends
    );
    let proxy = std::sync::Arc::new(proxy);
    if let Some(period) = options.move_every {
        tokio::spawn(move_everyone(proxy.clone(), period));
    }
    if let Some(period) = options.stats_every {
        tokio::spawn(print_stats(proxy.clone(), period));
    }
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("waiting for Ctrl-C: {e}"))?;
    println!("stopping");
    Ok(())
}

/// Every `period`, move every session that is not already moving to another backend.
async fn move_everyone(proxy: std::sync::Arc<Proxy>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        for session in proxy.sessions().into_iter().filter(|s| !s.moving) {
            let proxy = proxy.clone();
            tokio::spawn(async move { proxy.move_session(session.id, None).await });
        }
    }
}

async fn print_stats(proxy: std::sync::Arc<Proxy>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let m = proxy.metrics();
        let t = &m.transfers;
        println!(
            "sessions per backend {:?}; transfers: {} ok, {} recoverable, {} fatal, p50 {} us; \
             {} onto kept servers, kept now {:?}",
            m.sessions_per_backend,
            t.success,
            t.error_recoverable,
            t.error_fatal,
            t.latency_ns.quantile_lower_bound(0.5).unwrap_or(0) / 1_000,
            m.idle_servers_taken,
            m.idle_per_backend
        );
    }
}
