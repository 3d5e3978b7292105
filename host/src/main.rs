//! The `postern` command: parses the command line, sets up tracing, and runs a subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use postern::config::Config;
use postern::relay::{Relay, StartOptions};

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "SMTP relay with WebAssembly mail policies and Threat Defense journaling"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay (on the embedded loopback default when no config is given).
    Serve {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show the whole job on loopback: relay, next hop and intake receivers, sample mail.
    Demo {
        /// Where the relay listens.
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: SocketAddr,
        /// Send the samples, print the summary and exit instead of staying up.
        #[arg(long)]
        once: bool,
    },
    /// Check a configuration file and report every problem in it.
    CheckConfig { config: PathBuf },
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, causes joined: what an operator reads in a terminal or a service log.
            eprintln!("postern: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("POSTERN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Serve { config } => runtime.block_on(serve(config)),
        Command::Demo { listen, once } => runtime.block_on(demo(listen, once)),
        Command::CheckConfig { config } => {
            let loaded = load_config(&config)?;
            // What `serve` would read at start beyond the file itself.
            for listener in &loaded.listeners {
                if let Some(tls) = &listener.tls {
                    postern::inbound::acceptor(tls)
                        .map_err(|e| anyhow::anyhow!("listener {}: {e}", listener.name))?;
                }
            }
            let module = postern::relay::load_policy(&loaded)?;
            println!(
                "{}: ok; policy module {}",
                config.display(),
                module.identity()
            );
            Ok(())
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Says on standard error where the relay listens and where its mail log goes, so that a relay
/// started in a terminal with a log file does not look hung.
fn announce(relay: &Relay, config: &Config) {
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .zip(&relay.listen_addresses)
        .map(|(l, a)| format!("{a} ({})", l.name))
        .collect();
    let log = match &config.log.mail_log {
        Some(path) => path.display().to_string(),
        None => "standard output".into(),
    };
    eprintln!(
        "postern: listening on {}; mail log: {log}",
        listeners.join(", ")
    );
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let mut config = match &config {
        Some(path) => load_config(path)?,
        None => {
            eprintln!(
                "postern: no --config given: running on the embedded default (listen 127.0.0.1:2525, \
                 deliver by MX, TDC off); the mail log goes to standard output"
            );
            Config::embedded_default()
        }
    };
    if config.log.mail_log.is_none() {
        config.log.stdout = true;
    }
    let relay = Relay::start(config.clone(), StartOptions::default()).await?;
    announce(&relay, &config);
    wait_for_signals(&relay).await;
    relay.shutdown().await;
    Ok(())
}

/// Returns on SIGINT or SIGTERM; SIGHUP reopens the mail log (for log rotation).
async fn wait_for_signals(relay: &Relay) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => relay.log.reopen(),
        }
    }
}

async fn demo(listen: SocketAddr, once: bool) -> anyhow::Result<()> {
    let spool = std::env::temp_dir().join(format!("postern-demo-{}", std::process::id()));
    let demo = postern::demo::Demo::start(listen, &spool, true)
        .await
        .with_context(|| format!("starting the demo relay on {listen} (is the port free? try --listen 127.0.0.1:2600)"))?;
    println!(
        "postern demo: relay on {}, next hop on {}, intake on {}; sending sample mail...",
        demo.listen, demo.next_hop.address, demo.intake.address
    );
    let summary = demo.send_samples(Duration::from_secs(20)).await?;
    println!("{summary}");
    for (label, receiver) in [("next hop", &demo.next_hop), ("intake", &demo.intake)] {
        for m in receiver.messages.lock().expect("receiver lock").iter() {
            println!(
                "  {label} got {} bytes from <{}> to {:?}",
                m.data.len(),
                m.sender,
                m.recipients
            );
        }
    }
    if !once {
        println!(
            "postern demo: still running; send more with e.g.\n  swaks --server {} --from you@partner.example --to bob@corp.example\n\
             Ctrl-C to stop.",
            demo.listen
        );
        tokio::signal::ctrl_c().await?;
    }
    let complete = summary.next_hop_received == summary.sent && summary.intake_received == 3;
    demo.stop().await;
    let _ = std::fs::remove_dir_all(&spool);
    anyhow::ensure!(complete, "the demo did not deliver every copy: {summary}");
    Ok(())
}
