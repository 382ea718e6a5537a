//! Checks of the test helpers themselves (no binary involved), so that a
//! failure elsewhere can be trusted to be the binary's.

mod common;

use common::parse_summary;

/// The example of spec §4.2.
const SPEC_EXAMPLE: &str = "Total data sent:     1163.4 MiB (1219934025 bytes)
Total data received: 1160.6 MiB (1216952864 bytes)
Bandwidth per channel: 9714.162⇅ Mbps (1214270.2 kBps)
Aggregate bandwidth: 9702.278↓, 9726.046↑ Mbps
Packet rate estimate: 888570.2↓, 834805.9↑ (12↓, 45↑ TCP MSS/op)
Test duration: 1.00559 s.
";

#[test]
fn summary_parser_reads_the_spec_example() {
    let s = parse_summary(SPEC_EXAMPLE).expect("the spec example parses");
    assert_eq!(s.sent, 1_219_934_025);
    assert_eq!(s.received, 1_216_952_864);
    assert_eq!(s.per_channel_mbps, 9714.162);
    assert_eq!(s.per_channel_kbps, 1214270.2);
    assert_eq!(s.down_mbps, 9702.278);
    assert_eq!(s.up_mbps, 9726.046);
    assert_eq!(s.packets_down, 888570.2);
    assert_eq!(s.packets_up, 834805.9);
    assert_eq!((s.mss_per_op_down, s.mss_per_op_up), (12, 45));
    assert_eq!(s.duration, 1.00559);
}

#[test]
fn summary_parser_reads_small_and_kib_sizes() {
    let text = "Total data sent:     1234 bytes (1234 bytes)
Total data received: 3.0 KiB (3072 bytes)
Bandwidth per channel: 0.034⇅ Mbps (4.3 kBps)
Aggregate bandwidth: 0.012↓, 0.005↑ Mbps
Packet rate estimate: 1.0↓, 1.0↑ (1↓, 1↑ TCP MSS/op)
Test duration: 2 s.
";
    let s = parse_summary(text).expect("small sizes parse");
    assert_eq!((s.sent, s.received), (1234, 3072));
    let zero = "Total data sent:     0 bytes (0 bytes)
Total data received: 0 bytes (0 bytes)
Bandwidth per channel: 0.000⇅ Mbps (0.0 kBps)
Aggregate bandwidth: 0.000↓, 0.000↑ Mbps
Packet rate estimate: 0.0↓, 0.0↑ (0↓, 0↑ TCP MSS/op)
Test duration: 1.50123 s.
";
    let s = parse_summary(zero).expect("an idle run's summary parses");
    assert_eq!((s.sent, s.received), (0, 0));
}

#[test]
fn summary_parser_rejects_wrong_formats() {
    let bad = [
        // four spaces instead of five
        SPEC_EXAMPLE.replace("Total data sent:     ", "Total data sent:    "),
        // size shown in the wrong unit
        SPEC_EXAMPLE.replace("1163.4 MiB (1219934025", "1191341.8 KiB (1219934025"),
        // size that does not match the byte count
        SPEC_EXAMPLE.replace("1163.4 MiB", "1163.9 MiB"),
        // wrong number of decimals
        SPEC_EXAMPLE.replace("9702.278↓", "9702.28↓"),
        // aggregate that does not match the bytes and the duration
        SPEC_EXAMPLE.replace("9702.278↓", "4851.139↓"),
        // a line missing
        SPEC_EXAMPLE.replace(
            "Packet rate estimate: 888570.2↓, 834805.9↑ (12↓, 45↑ TCP MSS/op)\n",
            "",
        ),
        // something else on stdout
        format!("Destination: [127.0.0.1]:1\n{SPEC_EXAMPLE}"),
        // small sizes must be plain bytes
        SPEC_EXAMPLE
            .replace("1163.4 MiB (1219934025 bytes)", "1.2 KiB (1234 bytes)")
            .replace("9726.046↑", "0.010↑"),
    ];
    for text in &bad {
        assert!(
            parse_summary(text).is_err(),
            "the parser accepted a wrong summary:\n{text}"
        );
    }
}
