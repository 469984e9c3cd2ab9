//! The stdio framing in front of `tower-lsp-server`'s transport, so that no message can end the
//! server.
//!
//! Why: tower-lsp-server 0.23 reads stdin through a `tokio_util` `FramedRead`, which ends the
//! stream after the first decoding error. One body that is not JSON, `null`, a batch array, an
//! object without `"jsonrpc": "2.0"` or bytes that are not UTF-8 therefore stop its read loop,
//! and the server exits with status 0 — an editor sees a clean exit and does not restart it.
//! Patching the framework would mean a fork to maintain; replacing its transport would mean
//! re-implementing its request routing. This layer is small instead: it reads the frames
//! itself, answers a well-framed bad body as JSON-RPC 2.0 says (`-32700` parse error, `-32600`
//! invalid request, `"id": null`) and forwards only bodies the framework decodes, over an
//! in-memory pipe. Its output goes through one writer, so our answers never interleave with the
//! framework's frames.
//!
//! A broken header (no or unparsable `Content-Length`, a line without `:`, not UTF-8, the
//! input ending inside a frame) cannot be resynchronised reliably: a guess at the next frame
//! could read a body as headers. It is logged and the server exits with status 2, so the
//! editor restarts it. `exit` ends the server with 0 after `shutdown`, else 1, as LSP says; so
//! does the input ending between frames.

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};
use tokio::sync::mpsc::UnboundedSender;
use tower_lsp_server::jsonrpc;

/// The longest header line read; a longer one is a broken stream, not a header.
const MAX_HEADER_LINE: u64 = 8 * 1024;

/// The largest body accepted (a 50,000-line buffer is a few MiB); more is a broken header.
const MAX_BODY: usize = 256 << 20;

/// The capacity of each in-memory pipe to and from the framework.
const PIPE: usize = 64 * 1024;

/// How the client's input ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// `exit` was received (and forwarded); `shutdown` came before it or not.
    Exit {
        /// `shutdown` was received first.
        after_shutdown: bool,
    },
    /// The input ended between two frames.
    Eof {
        /// `shutdown` was received.
        after_shutdown: bool,
    },
    /// A header could not be read; the message says why.
    Broken(String),
}

impl Ending {
    /// The process's exit status for this ending.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Ending::Exit { after_shutdown } | Ending::Eof { after_shutdown } => {
                if *after_shutdown {
                    0
                } else {
                    1
                }
            }
            Ending::Broken(_) => 2,
        }
    }
}

/// Runs `server` (given the framework's input and output pipes) behind the framing layer over
/// `input`/`output`; returns how the input ended once the server has finished and every
/// answer is written.
pub(crate) async fn serve<I, O, F, Fut>(input: I, output: O, server: F) -> Ending
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(tokio::io::DuplexStream, tokio::io::DuplexStream) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (to_server, server_in) = tokio::io::duplex(PIPE);
    let (server_out, from_server) = tokio::io::duplex(PIPE);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(body) = out_rx.recv().await {
            if write_frame(&mut output, &body).await.is_err() {
                // The client is gone; nothing left to tell it.
                return;
            }
        }
    });
    let pump = {
        let out_tx = out_tx.clone();
        tokio::spawn(async move {
            let mut from_server = tokio::io::BufReader::new(from_server);
            while let Ok(Some(body)) = read_frame(&mut from_server).await {
                if out_tx.send(body).is_err() {
                    return;
                }
            }
        })
    };
    let reader = tokio::spawn(read_client(
        tokio::io::BufReader::new(input),
        to_server,
        out_tx,
    ));
    server(server_in, server_out).await;
    let ending = reader
        .await
        .unwrap_or_else(|e| Ending::Broken(format!("the input task failed: {e}")));
    let _ = pump.await;
    let _ = writer.await;
    ending
}

/// Reads the client's frames, forwards good bodies to the framework and answers bad ones.
async fn read_client<R: AsyncBufRead + Unpin>(
    mut input: R,
    mut to_server: tokio::io::DuplexStream,
    answers: UnboundedSender<Vec<u8>>,
) -> Ending {
    let mut after_shutdown = false;
    loop {
        let body = match read_frame(&mut input).await {
            Ok(Some(body)) => body,
            Ok(None) => return Ending::Eof { after_shutdown },
            Err(e) => {
                tracing::error!(
                    "cannot read the client's message header ({e}); the stream cannot be \
                     resynchronised, exiting so that the editor restarts the server"
                );
                return Ending::Broken(e);
            }
        };
        match check(&body) {
            Ok(method) => {
                if write_frame(&mut to_server, &body).await.is_err() {
                    // The framework stopped reading: it is ending.
                    return Ending::Eof { after_shutdown };
                }
                match method.as_deref() {
                    Some("shutdown") => after_shutdown = true,
                    Some("exit") => return Ending::Exit { after_shutdown },
                    _ => {}
                }
            }
            Err(error) => {
                tracing::warn!("answered a bad message with {error}");
                let answer = json!({ "jsonrpc": "2.0", "error": error, "id": null });
                let _ = answers.send(answer.to_string().into_bytes());
            }
        }
    }
}

/// What tower-lsp-server decodes a body as (its own `Message` is private): the same untagged
/// enum of its public types, in its order, so a body passes here exactly when it would decode
/// there.
#[derive(Deserialize)]
#[serde(untagged)]
enum Incoming {
    Response(
        #[expect(
            dead_code,
            reason = "decoded only to know that the framework decodes it"
        )]
        jsonrpc::Response,
    ),
    Request(jsonrpc::Request),
}

/// `Ok(method)` (`None` for a response) for a body the framework can take; the JSON-RPC error
/// object to answer with otherwise. A good body is parsed once; only a bad one is looked at
/// again, to tell a parse error from an invalid request.
fn check(body: &[u8]) -> Result<Option<String>, Value> {
    let error = |code: i64, message: &str, detail: String| json!({ "code": code, "message": message, "data": detail });
    let text = std::str::from_utf8(body)
        .map_err(|e| error(-32700, "Parse error", format!("the body is not UTF-8: {e}")))?;
    match serde_json::from_str::<Incoming>(text) {
        // The framework reads a missing `method` as "": not a request.
        Ok(Incoming::Request(request)) if !request.method().is_empty() => {
            return Ok(Some(request.method().to_owned()));
        }
        Ok(Incoming::Response(_)) => return Ok(None),
        _ => {}
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| error(-32700, "Parse error", format!("the body is not JSON: {e}")))?;
    let what = match &value {
        Value::Array(_) => "a batch (an array); LSP sends one message per frame".to_owned(),
        Value::Object(_) => "not a JSON-RPC 2.0 request, notification or response \
             (`\"jsonrpc\": \"2.0\"` and a `method`, or a `result`/`error` with an `id`)"
            .to_owned(),
        other => format!("`{other}`, not a JSON-RPC message object"),
    };
    Err(error(-32600, "Invalid Request", what))
}

/// Reads one frame's body: header lines up to an empty line, then `Content-Length` bytes.
/// `Ok(None)` when the input ends before a frame starts.
async fn read_frame<R: AsyncBufRead + Unpin>(input: &mut R) -> Result<Option<Vec<u8>>, String> {
    let mut length: Option<usize> = None;
    let mut first = true;
    loop {
        let mut line = Vec::new();
        let n = (&mut *input)
            .take(MAX_HEADER_LINE)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("cannot read the input: {e}"))?;
        if n == 0 && first {
            return Ok(None);
        }
        first = false;
        let Some(line) = line.strip_suffix(b"\n") else {
            return Err(if n as u64 == MAX_HEADER_LINE {
                "a header line longer than 8 KiB".to_owned()
            } else {
                "the input ended inside a header".to_owned()
            });
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| format!("a header line that is not UTF-8: {line:?}"))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("a header line without `:`: {line:?}"))?;
        // Other headers (`Content-Type`) carry nothing this server needs.
        if name.trim().eq_ignore_ascii_case("Content-Length") {
            let value = value.trim();
            length = Some(
                value
                    .parse()
                    .map_err(|_| format!("an invalid Content-Length: {value:?}"))?,
            );
        }
    }
    let length = length.ok_or("a message header without Content-Length")?;
    if length > MAX_BODY {
        return Err(format!(
            "a Content-Length of {length} bytes, more than the {MAX_BODY} accepted"
        ));
    }
    let mut body = vec![0; length];
    input.read_exact(&mut body).await.map_err(|e| {
        format!("the input ended inside a body of {length} bytes (Content-Length): {e}")
    })?;
    Ok(Some(body))
}

async fn write_frame<W: AsyncWrite + Unpin>(output: &mut W, body: &[u8]) -> std::io::Result<()> {
    output
        .write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes())
        .await?;
    output.write_all(body).await?;
    output.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &[u8]) -> Option<i64> {
        check(body).err().map(|e| e["code"].as_i64().unwrap())
    }

    #[test]
    fn bad_bodies_get_the_json_rpc_error_codes() {
        assert_eq!(code(b"{\"jsonrpc\":"), Some(-32700));
        assert_eq!(code(b"\xff\xfe"), Some(-32700));
        assert_eq!(code(b""), Some(-32700));
        assert_eq!(code(b"null"), Some(-32600));
        assert_eq!(
            code(b"[{\"jsonrpc\":\"2.0\",\"method\":\"x\"}]"),
            Some(-32600)
        );
        assert_eq!(code(b"{\"id\":1,\"method\":\"shutdown\"}"), Some(-32600));
        assert_eq!(
            code(b"{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"x\"}"),
            Some(-32600)
        );
        assert_eq!(code(b"{\"jsonrpc\":\"2.0\",\"id\":1}"), Some(-32600));
    }

    #[test]
    fn good_bodies_pass_with_their_method() {
        let ok = |b: &[u8]| check(b).unwrap();
        assert_eq!(
            ok(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"shutdown\"}").as_deref(),
            Some("shutdown")
        );
        assert_eq!(
            ok(b"{\"jsonrpc\":\"2.0\",\"method\":\"exit\"}").as_deref(),
            Some("exit")
        );
        assert_eq!(ok(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":null}"), None);
    }

    #[tokio::test]
    async fn frames_are_read_and_broken_headers_named() {
        let read = |s: &'static [u8]| async move {
            let mut r = tokio::io::BufReader::new(s);
            read_frame(&mut r).await
        };
        assert_eq!(
            read(b"Content-Length: 2\r\n\r\n{}").await,
            Ok(Some(b"{}".to_vec()))
        );
        assert_eq!(
            read(b"Content-Type: x\r\ncontent-length: 2\r\n\r\n{}").await,
            Ok(Some(b"{}".to_vec()))
        );
        assert_eq!(read(b"").await, Ok(None));
        for broken in [
            &b"Content-Length: x\r\n\r\n{}"[..],
            b"Content-Length 2\r\n\r\n{}",
            b"\r\n{}",
            b"Content-Length: 9\r\n\r\n{}",
            b"Content-Len",
        ] {
            assert!(read(broken).await.is_err(), "{broken:?}");
        }
    }
}
