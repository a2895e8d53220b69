//! Criterion micro-benchmarks of the ESP path and bare AES-GCM (one batch of 32 per iteration).

use bench::esp::{Fixture, Op, Size};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::esp::{Backend, Suite};

fn esp(c: &mut Criterion) {
    for size in [Size::Fixed(64), Size::Fixed(1420)] {
        for op in [Op::Encrypt, Op::Decrypt] {
            let mut g = c.benchmark_group(format!("{}-{}", op.label(), size.label()));
            let mut f = Fixture::new(Backend::default(), Suite::Aes128Gcm16, size, op);
            g.throughput(Throughput::Bytes(f.batch_bytes()));
            g.bench_function("esp", |b| b.iter(|| f.esp_batch()));
            let mut counter = 0u64;
            g.bench_function("aead", |b| b.iter(|| f.aead_batch(&mut counter)));
            g.finish();
        }
    }
}

criterion_group!(benches, esp);
criterion_main!(benches);
