#![allow(dead_code)]
// Shared set-up of the fuzz targets: one small volume per process.
use std::sync::OnceLock;

use envelopefs::kms::local::{KdfCost, LocalKeyService};
use envelopefs::volume::{CacheOptions, InitOptions, Volume};

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub ks: LocalKeyService,
    pub vol: Volume,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        // Release builds accept only the table's costs (src/kms/store.rs).
        let cost = KdfCost::default();
        let ks = LocalKeyService::create(&dir.path().join("ks"), "fuzz", cost).expect("store");
        let key = ks.default_key().expect("key");
        let vdir = dir.path().join("vol");
        Volume::init(&vdir, &ks, &key, &InitOptions::default()).expect("init");
        let vol = Volume::open(&vdir, &ks, CacheOptions::default()).expect("open");
        Fixture { _dir: dir, ks, vol }
    })
}
