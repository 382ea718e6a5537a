//! The WebSocket layer against any bytes a peer may send: both handshake
//! readers and the frame reader in both directions, fed in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpkali_fuzz::ws::{FrameEvent, FrameReader, RequestReader, ResponseReader};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| usize::from(*b % 64) + 1);
    let mut request = RequestReader::new();
    let mut response = ResponseReader::new(b"dGhlIHNhbXBsZSBub25jZQ==");
    for chunk in data.chunks(split) {
        let _ = request.feed(chunk);
        let _ = response.feed(chunk);
    }
    for from_client in [false, true] {
        let mut reader = FrameReader::new(from_client);
        let mut bytes = data.to_vec();
        let mut payload = 0usize;
        for chunk in bytes.chunks_mut(split) {
            let len = chunk.len();
            reader.feed(chunk, &mut |ev| {
                if let FrameEvent::Data(p) = ev {
                    payload += p.len();
                    assert!(p.len() <= len);
                }
            });
        }
        assert!(payload <= data.len());
    }
});
