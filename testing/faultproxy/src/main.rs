//! `cell-faultproxy`: one fault-injecting TCP link for manual runs, driven from stdin.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use cell_faultproxy::{Fault, Link};
use clap::Parser;

/// A TCP proxy between two endpoints that injects faults on command.
///
/// Forwards every connection accepted at --listen to --target. Commands, one per line on
/// stdin:
///
///   pass            forward everything (ends a blackhole: connections that lived
///                   through it are closed; new ones pass)
///   blackhole       forward nothing, either way; connections stay open and silent
///   reset           close every connection (TCP reset), refuse new ones
///   delay 50ms      deliver each chunk after this delay (units: us, ms, s; 0 for none)
///   loss 0.01       with this probability, a chunk closes its connection instead
///   stats           print connection and byte counters
///   quit            exit (so does end of input)
///
/// Example: cell-faultproxy --listen 127.0.0.1:9001 --target 127.0.0.1:7001
#[derive(Debug, Parser)]
#[command(name = "cell-faultproxy", verbatim_doc_comment)]
struct Args {
    /// Where to accept connections.
    #[arg(long)]
    listen: SocketAddr,
    /// Where to forward them.
    #[arg(long)]
    target: SocketAddr,
    /// Seed of the loss decisions (the same traffic makes the same decisions).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// One stdin command.
#[derive(Debug, PartialEq)]
enum Command {
    Fault(Fault),
    Delay(Duration),
    Loss(f64),
    Stats,
    Quit,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let link = Link::builder(args.target)
        .listen(args.listen)
        .seed(args.seed)
        .start()
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    eprintln!("forwarding {} -> {}", link.addr(), link.target());

    // stdin is read on a thread of its own: blocking reads stay off the runtime.
    let (lines, mut input) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if lines.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = input.recv().await {
        if line.trim().is_empty() {
            continue;
        }
        match parse(&line) {
            Ok(Command::Fault(fault)) => link.set_fault(fault),
            Ok(Command::Delay(delay)) => link.set_delay(delay),
            Ok(Command::Loss(p)) => link.set_loss(p),
            Ok(Command::Stats) => println!("{:?}", link.stats()),
            Ok(Command::Quit) => break,
            Err(error) => {
                eprintln!("error: {error:#}");
                continue;
            }
        }
        eprintln!("ok: {link:?}");
    }
    Ok(())
}

fn parse(line: &str) -> anyhow::Result<Command> {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or_default();
    let arg = words.next();
    if let Some(extra) = words.next() {
        bail!("unexpected {extra:?}");
    }
    let needs_arg = |what: &str| arg.with_context(|| format!("`{command}` needs {what}"));
    if !matches!(command, "delay" | "loss")
        && let Some(arg) = arg
    {
        bail!("`{command}` takes no argument, not {arg:?}");
    }
    Ok(match command {
        "pass" | "heal" => Command::Fault(Fault::Pass),
        "blackhole" => Command::Fault(Fault::Blackhole),
        "reset" => Command::Fault(Fault::Reset),
        "delay" => Command::Delay(parse_duration(needs_arg("a duration")?)?),
        "loss" => {
            let p: f64 = needs_arg("a probability")?.parse()?;
            if !(0.0..=1.0).contains(&p) {
                bail!("a probability is between 0 and 1, not {p}");
            }
            Command::Loss(p)
        }
        "stats" => Command::Stats,
        "quit" | "exit" => Command::Quit,
        other => bail!("unknown command {other:?} (see --help)"),
    })
}

/// `250us`, `50ms`, `2s`, or `0`.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("{text:?} has no unit (us, ms, s)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a duration"))?;
    Ok(match unit {
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        _ => bail!("unknown unit {unit:?} in {text:?} (us, ms, s)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse("blackhole").unwrap(),
            Command::Fault(Fault::Blackhole)
        );
        assert_eq!(parse(" pass ").unwrap(), Command::Fault(Fault::Pass));
        assert_eq!(parse("reset").unwrap(), Command::Fault(Fault::Reset));
        assert_eq!(
            parse("delay 50ms").unwrap(),
            Command::Delay(Duration::from_millis(50))
        );
        assert_eq!(parse("delay 0").unwrap(), Command::Delay(Duration::ZERO));
        assert_eq!(parse("loss 0.01").unwrap(), Command::Loss(0.01));
        assert_eq!(parse("quit").unwrap(), Command::Quit);
    }

    #[test]
    fn bad_commands_are_refused() {
        for line in [
            "delay", "delay 50", "delay 5m", "delay ms", "loss 2", "loss x", "jump", "pass now",
        ] {
            assert!(parse(line).is_err(), "{line:?} was accepted");
        }
    }
}
