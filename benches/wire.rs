//! Native protocol codec: encoding and decoding a SubmitBatch of 500 trades and its BatchAck.
//! Run: `cargo bench --bench wire`. Figures: docs/benchmarks.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keel_domain::{TradeAction, TradeReport};
use keel_wire::{
    decode_client_message, decode_payload, encode_frame, AckResult, ClientMessage, Instruction,
    ServerMessage, SubmitBatch, FRAME_BYTES_MAX,
};

mod support;

const BATCH: usize = 500;

fn codec(c: &mut Criterion) {
    let mut rng = support::Rng::new(5);
    let instructions: Vec<Instruction> = (0..BATCH)
        .map(|n| {
            Instruction::Trade(TradeReport {
                report_id: format!("W{n}").parse().expect("id"),
                action: TradeAction::New(support::details(&mut rng, 10_000, 50)),
            })
        })
        .collect();
    let batch = ClientMessage::SubmitBatch(SubmitBatch {
        batch_id: 1,
        tenant: "bench".parse().expect("tenant"),
        instructions,
    });
    let ack = ServerMessage::BatchAck {
        batch_id: 1,
        results: (0..BATCH as u64).map(|sequence| AckResult::Accepted { sequence }).collect(),
    };
    let mut frame = Vec::with_capacity(1 << 20);
    encode_frame(&batch, &mut frame);
    let mut ack_frame = Vec::new();
    encode_frame(&ack, &mut ack_frame);

    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("encode_submit_batch_500", |b| {
        b.iter(|| {
            frame.clear();
            encode_frame(black_box(&batch), &mut frame);
            black_box(frame.len())
        })
    });
    group.bench_function("decode_submit_batch_500", |b| {
        b.iter(|| {
            black_box(
                decode_payload::<ClientMessage>(black_box(&frame[4..]), FRAME_BYTES_MAX)
                    .expect("decode"),
            )
        })
    });
    // What the server runs: trade batches read directly, everything else through serde.
    group.bench_function("decode_client_message_500", |b| {
        b.iter(|| {
            black_box(
                decode_client_message(black_box(&frame[4..]), FRAME_BYTES_MAX).expect("decode"),
            )
        })
    });
    group.bench_function("encode_batch_ack_500", |b| {
        let mut out = Vec::with_capacity(1 << 16);
        b.iter(|| {
            out.clear();
            encode_frame(black_box(&ack), &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("decode_batch_ack_500", |b| {
        b.iter(|| {
            black_box(
                decode_payload::<ServerMessage>(black_box(&ack_frame[4..]), FRAME_BYTES_MAX)
                    .expect("decode"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
