//! Key-service calls stay envelope-shaped: 1,000 files written in one
//! write-only session cost one GetPublicKey (none with --recipient-file) and
//! no Decrypt; a full mount reading them back makes one GetPublicKey and one
//! unseal per session present, never one per file.

use crate::common::*;
use crate::support::*;
use crate::tree::names_in;

const FILES: usize = 1000;

fn content(i: usize) -> Vec<u8> {
    pattern(i as u64, (i * 37) % 9000)
}

#[test]
fn thousand_files_cost_one_call_per_session_not_per_file() {
    if !need_fuse("thousand_files_cost_one_call_per_session_not_per_file") {
        return;
    }
    bounded(180, || {
        let env = Env::new();
        let r = Recipient::rsa(&env);
        let c = init_v2(&env, "c", &r);
        let der = r.der_file(&env, "recipient.der");

        let mark = audit_mark(&env);
        let w = env.mount(&c, "w", &strs(&r.by_key()));
        std::fs::create_dir(w.p("d")).unwrap();
        for i in 0..FILES {
            std::fs::write(w.p(&format!("d/f{i:04}")), content(i)).unwrap();
        }
        w.unmount();
        assert_eq!(
            audit_since(&env, mark),
            ops(&[("GetPublicKey", 1)]),
            "a write-only session of {FILES} files: one GetPublicKey, nothing else"
        );
        assert_eq!(sessions(&c).len(), 1);

        let mark = audit_mark(&env);
        let m = env.mount(&c, "m", &[]);
        let names = names_in(&m.p("d"));
        assert_eq!(names.len(), FILES);
        for (i, name) in names.iter().enumerate() {
            assert_eq!(*name, format!("f{i:04}"));
            assert_eq!(
                std::fs::read(m.p("d").join(name)).unwrap(),
                content(i),
                "{name}"
            );
        }
        m.unmount();
        assert_eq!(
            audit_since(&env, mark),
            ops(&[("GetPublicKey", 1), ("Decrypt", 1)]),
            "a full mount over one session: GetPublicKey and one Decrypt"
        );

        // A second write-only session, given the public key: no call at all.
        let mark = audit_mark(&env);
        let w = env.mount(&c, "w", &strs(&Recipient::by_file(&der)));
        for i in 0..10 {
            std::fs::write(w.p(&format!("second{i}")), content(i)).unwrap();
        }
        w.unmount();
        assert_eq!(audit_since(&env, mark), ops(&[]), "--recipient-file");
        assert_eq!(sessions(&c).len(), 2);

        let mark = audit_mark(&env);
        let m = env.mount(&c, "m", &[]);
        assert_eq!(names_in(&m.p("d")).len(), FILES);
        assert_eq!(std::fs::read(m.p("d/f0999")).unwrap(), content(999));
        for i in 0..10 {
            assert_eq!(
                std::fs::read(m.p(&format!("second{i}"))).unwrap(),
                content(i)
            );
        }
        m.unmount();
        assert_eq!(
            audit_since(&env, mark),
            ops(&[("GetPublicKey", 1), ("Decrypt", 2)]),
            "two sessions present: two Decrypts"
        );
    });
}
