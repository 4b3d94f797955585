#![allow(missing_docs)]
//! Micro-benchmarks of the sans-IO core: frame parse/encode, unmasking and UTF-8 validation,
//! reported as throughput (bytes per second) by criterion.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use switchboard_ws_proto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use switchboard_ws_proto::mask::{apply_mask, apply_mask_scalar};
use switchboard_ws_proto::{utf8, Config, Connection, Role};

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: Some([1, 2, 3, 4]), payload_len: 1000 };
    let mut hb = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut hb);
    g.bench_function("header_parse", |b| b.iter(|| FrameHeader::parse(black_box(&hb[..n]))));
    g.bench_function("header_encode", |b| b.iter(|| black_box(&h).encode(&mut hb)));
    for size in [20usize, 1024, 16 * 1024] {
        let now = Instant::now();
        let cfg = Config::default().with_ping_interval(None);
        let mut client = Connection::new(Role::Client, cfg.clone(), now);
        let payload = vec![b'a'; size];
        let mut wire = BytesMut::new();
        for _ in 0..64 {
            client.send_binary(&payload, &mut wire).unwrap_or_default();
        }
        g.throughput(Throughput::Bytes((size * 64) as u64));
        g.bench_function(format!("server_read_64x{size}B"), |b| {
            let mut server = Connection::new(Role::Server, cfg.clone(), now);
            b.iter(|| {
                let mut buf = wire.clone();
                while let Ok(Some(m)) = server.read(&mut buf, now) {
                    black_box(m);
                }
            })
        });
        let mut server = Connection::new(Role::Server, cfg.clone(), now);
        let mut out = BytesMut::with_capacity(size * 64 + 1024);
        g.bench_function(format!("server_encode_64x{size}B"), |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..64 {
                    server.send_binary(black_box(&payload), &mut out).unwrap_or_default();
                }
            })
        });
    }
    g.finish();
}

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [125usize, 16 * 1024, 1 << 20] {
        let mut buf = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("word_{size}B"), |b| b.iter(|| apply_mask(black_box(&mut buf), [1, 2, 3, 4], 0)));
        g.bench_function(format!("scalar_{size}B"), |b| {
            b.iter(|| apply_mask_scalar(black_box(&mut buf), [1, 2, 3, 4], 0))
        });
    }
    g.finish();
}

fn utf8_validation(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    let ascii = "a".repeat(1 << 20);
    let mixed = "héllo wörld κόσμε 日本語 🎉 ".repeat((1 << 20) / 40);
    for (name, s) in [("ascii_1MiB", &ascii), ("mixed_1MiB", &mixed)] {
        g.throughput(Throughput::Bytes(s.len() as u64));
        g.bench_function(format!("simd_{name}"), |b| b.iter(|| utf8::is_valid(black_box(s.as_bytes()))));
        g.bench_function(format!("std_{name}"), |b| b.iter(|| std::str::from_utf8(black_box(s.as_bytes())).is_ok()));
    }
    g.finish();
}

criterion_group!(benches, frames, masking, utf8_validation);
criterion_main!(benches);
