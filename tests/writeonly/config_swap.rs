//! The recipient comes from the user, never from the cipher directory: a
//! config rewritten to name an attacker's key (its ARN, spec and fingerprint,
//! and the MAC recomputed as anyone holding the attacker's public key can)
//! makes `mount --write-only` with the original key refuse, with exit 11
//! and one line, before it writes anything to the cipher directory.

use crate::common::*;
use crate::support::*;

#[test]
fn write_only_mount_refuses_a_config_naming_another_recipient() {
    if !need_fuse("write_only_mount_refuses_a_config_naming_another_recipient") {
        return;
    }
    bounded(120, || {
        let env = Env::new();
        let r = Recipient::rsa(&env);
        let attacker = Recipient::rsa(&env);
        let c = init_v2(&env, "c", &r);
        let der = r.der_file(&env, "r.der");
        let pem = r.pem_file(&env, "r.pem");

        // The untouched config mounts write-only (the control), and a file
        // written then exists before the swap.
        let w = env.mount(&c, "w", &strs(&r.by_key()));
        std::fs::write(w.p("before"), b"written before the swap").unwrap();
        w.unmount();

        let original = ConfigFileV2::read(&c);
        assert!(
            original.mac_is_valid_for(&r.fingerprint()),
            "the oracle: the test computes the MAC as the format defines it"
        );
        let mut swapped = original.clone();
        swapped.config.recipient_key_arn = attacker.arn.clone();
        swapped.config.recipient_key_spec = attacker.spec.clone();
        swapped.config.recipient_public_key_sha256 = hex(&attacker.fingerprint());
        let stale_mac = swapped.clone();
        swapped.mac = swapped.mac_for(&attacker.fingerprint(), &[7; 12]);
        assert!(swapped.mac_is_valid_for(&attacker.fingerprint()));

        let recipients = [
            ("--recipient-key", r.by_key()),
            ("--recipient-file DER", Recipient::by_file(&der)),
            ("--recipient-file PEM", Recipient::by_file(&pem)),
        ];
        for (attack, cfg) in [("MAC recomputed", &swapped), ("MAC left", &stale_mac)] {
            cfg.write(&c);
            for (how, flags) in &recipients {
                let before = tree_state(&c);
                let (code, err) = mount_refused(&env, &c, "w", &strs(flags));
                assert_eq!(
                    code, 11,
                    "{attack}, {how}: the exit code of a bad config: {err}"
                );
                one_line_error(&format!("{attack}, {how}"), &err);
                assert_eq!(
                    tree_state(&c),
                    before,
                    "{attack}, {how}: the refused mount wrote to the cipher directory"
                );
            }
        }

        // Put back, the config mounts again and nothing was lost.
        original.write(&c);
        let w = env.mount(&c, "w", &strs(&Recipient::by_file(&der)));
        std::fs::write(w.p("after"), b"after").unwrap();
        w.unmount();
        let m = env.mount(&c, "m", &[]);
        assert_eq!(
            std::fs::read(m.p("before")).unwrap(),
            b"written before the swap"
        );
        assert_eq!(std::fs::read(m.p("after")).unwrap(), b"after");
        m.unmount();
    });
}
