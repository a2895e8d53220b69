//! Criterion micro-benchmarks of the ESP path and bare AES-GCM: one batch of 32 packets per
//! iteration, AES-128-GCM, the default backend, 64 and 1420 bytes.

use bench::esp::{Fixture, Op, Size};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::esp::{Backend, Suite};

fn esp(c: &mut Criterion) {
    for size in [Size::Fixed(64), Size::Fixed(1420)] {
        for op in Op::ALL {
            let mut g = c.benchmark_group(format!("{}-{}", op.label(), size.label()));
            let mut f = Fixture::new(Backend::default(), Suite::Aes128Gcm16, size, op)
                .expect("benchmark fixture");
            g.throughput(Throughput::Bytes(f.cycle_bytes()));
            g.bench_function("esp", |b| b.iter(|| assert!(f.esp_cycle())));
            g.bench_function("aead", |b| b.iter(|| assert!(f.aead_cycle())));
            g.bench_function("copy", |b| b.iter(|| f.copy_cycle()));
            g.finish();
        }
    }
}

criterion_group!(benches, esp);
criterion_main!(benches);
