//! The block layer alone: AES-256-GCM throughput per backend and block size,
//! file-level block encryption, and header wrap/unwrap rates.
//! Run: `cargo bench --bench blocks`.

#![allow(clippy::disallowed_methods)] // tests create fixtures with std

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use envelopefs::crypto::aead::{Backend, Cipher};
use envelopefs::crypto::content::FileCrypto;
use envelopefs::crypto::header::FileHeader;
use envelopefs::crypto::keys::{DataKey, FileId, VolumeId, VolumeKey};
use envelopefs::crypto::offsets::BlockIndex;

fn aead(c: &mut Criterion) {
    let mut g = c.benchmark_group("aead_seal");
    for backend in [Backend::Ring, Backend::RustCrypto] {
        for size in [4096usize, 65536] {
            g.throughput(Throughput::Bytes(size as u64));
            let cipher = Cipher::with_backend(&[7u8; 32], backend);
            let mut buf = vec![1u8; size];
            g.bench_with_input(
                BenchmarkId::new(format!("{backend:?}"), size),
                &size,
                |b, _| b.iter(|| cipher.seal(&[0u8; 12], b"aad", &mut buf)),
            );
        }
    }
    g.finish();
}

fn file_blocks(c: &mut Criterion) {
    let mut g = c.benchmark_group("file_blocks");
    let fc = FileCrypto::new(FileId([1; 16]), DataKey::random());
    let plain = vec![3u8; 1 << 20];
    for bs in [4096usize, 65536] {
        g.throughput(Throughput::Bytes(plain.len() as u64));
        let chunks: Vec<&[u8]> = plain.chunks(bs).collect();
        let mut out = Vec::with_capacity(plain.len() * 2);
        g.bench_with_input(BenchmarkId::new("encrypt_1MiB", bs), &bs, |b, _| {
            b.iter(|| {
                out.clear();
                fc.encrypt_blocks(BlockIndex(0), &chunks, &mut out)
            })
        });
        out.clear();
        fc.encrypt_blocks(BlockIndex(0), &chunks, &mut out);
        // The read path: the request's blocks decrypted in place, the buffer
        // refilled with ciphertext (the pread) each time.
        let lens = vec![bs; plain.len() / bs];
        let mut buf = out.clone();
        g.bench_with_input(BenchmarkId::new("decrypt_1MiB", bs), &bs, |b, _| {
            b.iter(|| {
                buf.copy_from_slice(&out);
                fc.decrypt_blocks_in_place(BlockIndex(0), &mut buf, &lens)
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn headers(c: &mut Criterion) {
    let vk = VolumeKey::random();
    let vid = VolumeId([2; 16]);
    let dk = DataKey::random();
    let h = FileHeader::seal(&vk, &vid, FileId([3; 16]), &dk);
    c.bench_function("header_wrap", |b| {
        b.iter(|| FileHeader::seal(&vk, &vid, FileId([3; 16]), &dk))
    });
    c.bench_function("header_unwrap", |b| b.iter(|| h.open(&vk, &vid).unwrap()));
}

criterion_group!(benches, aead, file_blocks, headers);
criterion_main!(benches);
