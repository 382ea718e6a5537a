//! Message expressions and the regex generator: parse any bytes, and
//! render what parses on both sides, checking the promised lengths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpkali_fuzz::expr::{RenderCtx, Template};

fuzz_target!(|data: &[u8]| {
    let mut rng = oorandom::Rand32::new(7);
    let unescape = data.first().is_some_and(|b| b & 1 == 1);
    let Ok(t) = Template::parse(data, unescape, &mut rng) else {
        return;
    };
    let framed = tcpkali_fuzz::expr::ws_auto_frame(&t);
    for template in [&t, &framed] {
        for client_side in [false, true] {
            let lengths = template.lengths(client_side);
            let mut ctx = RenderCtx { uid: 42, ptr: 0x7f00, rng: &mut rng, client_side };
            let (mut out, mut markers) = (Vec::new(), Vec::new());
            template.render(&mut ctx, &mut out, &mut markers);
            assert!(
                out.len() >= lengths.min && out.len() <= lengths.max,
                "{} bytes outside {}..{}",
                out.len(),
                lengths.min,
                lengths.max
            );
            for at in markers {
                assert!(at + tcpkali_fuzz::expr::MARKER_LEN <= out.len());
            }
        }
    }
});
