//! Fuzzes everything that reads bytes from a peer before trusting them: the frame decoder
//! (fed as a stream, frame after frame), the handshake parsers (the structured reject
//! included), metadata blocks (protocol 4), stream items and credits (protocol 5), and validated decoding of the payloads as a few
//! protein types. None of them may panic, whatever the bytes.

#![no_main]

use cell_runtime::codec::{self, Bytes};
use cell_runtime::frame::{self, Kind};
use cell_runtime::Metadata;
use cell_runtime::handshake::{self, Challenge, Hello, Proof, Welcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the maximum frame length, so small limits get exercised too.
    let Some((&limit, stream)) = data.split_first() else {
        return;
    };
    let max = u32::from(limit) * 16;
    let mut rest = stream;
    while let Ok(Some((header, payload, used))) = frame::decode(rest, max) {
        assert!(header.len <= max && payload.end <= used && used <= rest.len());
        // Payloads are read from an aligned copy, as the runtime's read buffer provides.
        let mut aligned = Bytes::new();
        aligned.extend_from_slice(&rest[payload]);
        match header.kind {
            Kind::Hello => {
                let _ = Hello::parse(&aligned);
                let _ = Hello::peek_version(&aligned);
            }
            Kind::Welcome => {
                let _ = Welcome::parse(&aligned);
            }
            Kind::Reject => {
                let _ = handshake::parse_reject(&header, &aligned);
            }
            Kind::MetaRequest | Kind::MetaResponse => {
                if let Ok((_, archive)) = Metadata::split(&aligned) {
                    let _ = codec::from_bytes::<String>(archive);
                    let _ = codec::from_bytes::<(u64, u64)>(archive);
                }
            }
            Kind::Challenge => {
                let _ = Challenge::parse(&aligned);
            }
            Kind::Proof => {
                let _ = Proof::parse(&aligned);
            }
            // Protocol 5: a credit is its header alone; a stream item is an archive like any
            // reply's.
            Kind::Credit => {}
            Kind::StreamItem => {
                let _ = codec::from_bytes::<u64>(&aligned);
                let _ = codec::from_bytes::<Vec<u8>>(&aligned);
            }
            _ => {
                let _ = codec::from_bytes::<String>(&aligned);
                let _ = codec::from_bytes::<(u64, u64)>(&aligned);
                let _ = codec::from_bytes::<Vec<Option<String>>>(&aligned);
                let _ = codec::access::<std::collections::BTreeMap<String, Vec<u8>>>(&aligned);
            }
        }
        rest = &rest[used..];
    }
});
