//! The Kubernetes CLIs' rules, without a server: k8s-mcp-server's default
//! rules matched on words, credential and cluster flags, read-only mode's
//! mutating verbs, a user's k8s-mcp-server file under the defaults, and
//! strict mode's pipeline shape.

use pod_exec_mcp::policy::{Mode, Policy, RuleFile, pipeline};

fn fixture() -> RuleFile {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k8s-mcp-server-security-config.yaml");
    RuleFile::load(&path).expect("the published file loads unchanged")
}

fn strict() -> Policy {
    Policy::new(Mode::Strict, None, false).with_k8s_defaults()
}

fn rule(p: &Policy, tool: &str, cmd: &str) -> Option<String> {
    p.check(tool, cmd).err().map(|r| r.rule)
}

#[test]
fn default_rules_match_on_words() {
    let p = strict();
    let delete = Some("yaml:dangerous_commands:kubectl delete".to_string());
    let r = p.check("kubectl", "kubectl delete ns y").unwrap_err();
    assert!(
        r.message
            .contains("the built-in kubectl/helm/istioctl/argocd rules"),
        "{}",
        r.message
    );
    assert_eq!(rule(&p, "kubectl", "kubectl -n x delete ns y"), delete);
    assert_eq!(rule(&p, "kubectl", "kubectl  delete ns y"), delete);
    assert_eq!(
        rule(&p, "kubectl", "kubectl --context=a delete   namespace y"),
        delete
    );
    // `kubectl delete pod` excuses a named pod, not `pods --all`.
    assert_eq!(rule(&p, "kubectl", "kubectl delete pod web-1"), None);
    assert_eq!(rule(&p, "kubectl", "kubectl delete pods web-1"), delete);
    assert_eq!(
        rule(&p, "kubectl", "kubectl delete pods --all").as_deref(),
        Some("k8s:delete-all")
    );
    assert_eq!(
        rule(&p, "kubectl", "kubectl delete pod --all").as_deref(),
        Some("k8s:delete-all")
    );
    assert_eq!(
        rule(&p, "kubectl", "kubectl delete pod x -A").as_deref(),
        Some("k8s:delete-all")
    );
    assert_eq!(rule(&p, "kubectl", "kubectl delete -l pod pods"), delete);
    for (tool, cmd) in [
        ("kubectl", "kubectl drain node-1"),
        ("kubectl", "kubectl replace --force -f x.yaml"),
        ("kubectl", "kubectl port-forward svc/web 8080"),
        ("kubectl", "kubectl cp web-1:/etc/passwd ."),
        ("helm", "helm uninstall web"),
        ("helm", "helm --debug delete web"),
        ("helm", "helm upgrade web chart"),
        ("helm", "helm rollback web 1"),
        ("istioctl", "istioctl experimental precheck"),
        ("istioctl", "istioctl proxy-config routes web"),
        ("istioctl", "istioctl dashboard kiali"),
        ("argocd", "argocd app delete web"),
        ("argocd", "argocd app set web --revision x"),
        ("argocd", "argocd cluster rm prod"),
        ("argocd", "argocd repo rm https://x"),
    ] {
        assert!(rule(&p, tool, cmd).is_some(), "{cmd}");
    }
    for (tool, cmd) in [
        ("kubectl", "kubectl get pods -A"),
        ("kubectl", "kubectl describe pod web-1"),
        ("kubectl", "kubectl logs web-1"),
        ("kubectl", "kubectl exec --help"),
        ("kubectl", "kubectl get pod delete"),
        ("helm", "helm list -A"),
        ("helm", "helm upgrade --help"),
        ("istioctl", "istioctl analyze"),
        ("argocd", "argocd app list"),
    ] {
        assert_eq!(rule(&p, tool, cmd), None, "{cmd}");
    }
}

#[test]
fn credential_and_cluster_flags_are_refused() {
    let p = strict();
    for (tool, cmd) in [
        ("kubectl", "kubectl --server=http://elsewhere get pods"),
        ("kubectl", "kubectl get pods --server http://elsewhere"),
        ("kubectl", "kubectl -s http://elsewhere get pods"),
        ("kubectl", "kubectl get pods --token=x"),
        ("kubectl", "kubectl get pods --kubeconfig /tmp/k"),
        ("kubectl", "kubectl get pods --as=admin"),
        ("kubectl", "kubectl get pods --as-group=system:masters"),
        ("kubectl", "kubectl get pods --insecure-skip-tls-verify"),
        ("kubectl", "kubectl get pods --certificate-authority=/ca"),
        ("kubectl", "kubectl get pods --client-certificate=/c"),
        ("kubectl", "kubectl get pods --client-key=/k"),
        ("kubectl", "kubectl get pods --username=u --password=p"),
        ("helm", "helm list --kube-apiserver=http://x"),
        ("helm", "helm list --kube-token x"),
        ("helm", "helm list --kube-as-user admin"),
        ("helm", "helm list --kubeconfig /k"),
        ("istioctl", "istioctl analyze --kubeconfig /k"),
        ("argocd", "argocd app list --server x --auth-token t"),
    ] {
        assert_eq!(
            rule(&p, tool, cmd).as_deref(),
            Some("k8s:credential-flag"),
            "{cmd}"
        );
    }
    // Allowed: a context of the mounted kubeconfig, `version --client`, and
    // flags after `--` (the command run in a pod).
    assert_eq!(rule(&p, "kubectl", "kubectl --context=prod get pods"), None);
    assert_eq!(rule(&p, "kubectl", "kubectl version --client"), None);
    assert_eq!(rule(&p, "helm", "helm list --kube-context prod"), None);
    assert_eq!(
        rule(&p, "kubectl", "kubectl exec pod web -- curl --token=x"),
        None,
        "after `--`"
    );
    // Permissive mode lets them through (not read-only).
    let permissive = Policy::new(Mode::Permissive, None, false).with_k8s_defaults();
    assert_eq!(
        rule(&permissive, "kubectl", "kubectl --token=x get pods"),
        None
    );
}

#[test]
fn read_only_refuses_every_mutating_verb_in_any_mode() {
    for mode in [Mode::Strict, Mode::Permissive] {
        let p = Policy::new(mode, None, true).with_k8s_defaults();
        for (tool, cmd) in [
            ("kubectl", "kubectl delete pod x"),
            ("kubectl", "kubectl apply -f x.yaml"),
            ("kubectl", "kubectl -n a create deploy x --image=y"),
            ("kubectl", "kubectl patch pod x -p {}"),
            ("kubectl", "kubectl replace -f x"),
            ("kubectl", "kubectl scale deploy x --replicas=0"),
            ("kubectl", "kubectl edit deploy x"),
            ("kubectl", "kubectl label pod x a=b"),
            ("kubectl", "kubectl annotate pod x a=b"),
            ("kubectl", "kubectl drain n"),
            ("kubectl", "kubectl cordon n"),
            ("kubectl", "kubectl uncordon n"),
            ("kubectl", "kubectl taint nodes n k=v:NoSchedule"),
            ("kubectl", "kubectl rollout restart deploy/x"),
            ("kubectl", "kubectl rollout --namespace a undo deploy/x"),
            ("kubectl", "kubectl exec x -- id"),
            ("kubectl", "kubectl cp x:/a b"),
            ("kubectl", "kubectl port-forward x 80"),
            ("kubectl", "kubectl config use-context prod"),
            ("helm", "helm install x chart"),
            ("helm", "helm upgrade x chart"),
            ("helm", "helm uninstall x"),
            ("helm", "helm rollback x 1"),
            ("argocd", "argocd app sync x"),
            ("argocd", "argocd app delete x"),
            ("argocd", "argocd app set x --revision y"),
            ("istioctl", "istioctl install -y"),
            ("istioctl", "istioctl uninstall --purge"),
        ] {
            let r = p.check(tool, cmd).expect_err(cmd);
            assert!(
                r.rule.starts_with("read-only:")
                    || r.rule.starts_with("yaml:")
                    || r.rule.starts_with("k8s:"),
                "{cmd}: {r:?}"
            );
            assert!(r.message.contains("read-only"), "{cmd}: {}", r.message);
        }
        for (tool, cmd) in [
            ("kubectl", "kubectl get pods"),
            ("kubectl", "kubectl describe pod x"),
            ("kubectl", "kubectl logs x"),
            ("kubectl", "kubectl rollout status deploy/x"),
            ("kubectl", "kubectl config view"),
            ("helm", "helm list"),
            ("helm", "helm status x"),
            ("argocd", "argocd app get x"),
            ("istioctl", "istioctl analyze"),
        ] {
            assert_eq!(rule(&p, tool, cmd), None, "{mode:?} {cmd}");
        }
    }
}

#[test]
fn a_user_file_replaces_a_tools_sections_and_keeps_the_rest() {
    // The fixture gives kubectl's dangerous_commands with `kubectl cordon`
    // (not in the defaults) and regex rules; helm keeps its own list.
    let p = Policy::new(Mode::Strict, Some(fixture()), false).with_k8s_defaults();
    assert!(rule(&p, "kubectl", "kubectl cordon n1").is_some());
    assert_eq!(
        rule(&p, "kubectl", "kubectl get pods --namespace=kube-system").as_deref(),
        Some("yaml:regex_rules:Operations in kube-system namespace")
    );
    assert!(rule(&p, "helm", "helm uninstall x").is_some());
    assert_eq!(rule(&p, "kubectl", "kubectl get pods"), None);
    // Refusals name where the rule came from.
    let r = p.check("kubectl", "kubectl cordon n1").unwrap_err();
    assert!(
        r.message.contains("k8s-mcp-server-security-config.yaml"),
        "{}",
        r.message
    );
    let r = p.check("helm", "helm uninstall x").unwrap_err();
    assert!(
        r.message.contains("k8s-mcp-server-security-config.yaml"),
        "{}",
        r.message
    );
    // A file giving only safe_patterns for helm keeps helm's default
    // dangerous list.
    let f = RuleFile::parse("f", "safe_patterns:\n  helm: [\"helm upgrade web\"]\n").unwrap();
    let p = Policy::new(Mode::Strict, Some(f), false).with_k8s_defaults();
    assert_eq!(rule(&p, "helm", "helm upgrade web chart"), None);
    assert!(rule(&p, "helm", "helm upgrade db chart").is_some());
    let r = p.check("helm", "helm rollback web 1").unwrap_err();
    assert!(r.message.contains("the built-in"), "{}", r.message);
}

#[test]
fn pipeline_shape_is_public_and_bounded() {
    assert!(pipeline::check("kubectl get pods -o json | jq '.items | length'").is_ok());
    let e = pipeline::check("kubectl get pods | sh").unwrap_err();
    assert_eq!(e.rule, "pipeline:not-a-filter");
    assert!(e.message.contains("`sh` after a pipe"), "{}", e.message);
    // A long line is scanned once (no quadratic work, no panic).
    let long = format!("kubectl get pods {}", "'a|b' ".repeat(100_000));
    assert_eq!(pipeline::split(&long).unwrap().segments.len(), 1);
    let unbalanced = format!("kubectl get \"{}", "x".repeat(10_000));
    assert!(pipeline::check(&unbalanced).is_err());
}

#[test]
fn shell_exec_is_held_to_the_cli_rules_with_the_k8s_profile() {
    let p = strict();
    assert_eq!(
        rule(&p, "shell", "cd /tmp && kubectl --token=x get pods | head").as_deref(),
        Some("k8s:credential-flag")
    );
    assert_eq!(
        rule(&p, "shell", "sh -c 'helm uninstall web'").as_deref(),
        Some("yaml:dangerous_commands:helm uninstall")
    );
    assert_eq!(rule(&p, "shell", "kubectl get pods -o name | wc -l"), None);
    assert_eq!(
        rule(&p, "shell", "rm -rf /").as_deref(),
        Some("shell:rm-root")
    );
    let ro = Policy::new(Mode::Permissive, None, true).with_k8s_defaults();
    assert!(rule(&ro, "shell", "/usr/local/bin/kubectl delete pod x").is_some());
    // Without the profile shell_exec keeps its own rules only.
    let plain = Policy::new(Mode::Strict, None, false);
    assert_eq!(rule(&plain, "shell", "kubectl --token=x get pods"), None);
}

#[test]
fn user_cli_mutating_verbs_in_read_only_mode() {
    let verbs = ["git push".to_string(), "git commit".to_string()];
    let ro = Policy::new(Mode::Permissive, None, true).with_mutating("git", &verbs);
    assert_eq!(
        rule(&ro, "git", "git -C repo push origin main").as_deref(),
        Some("read-only:git push")
    );
    assert_eq!(
        rule(&ro, "git", "git commit -m x").as_deref(),
        Some("read-only:git commit")
    );
    assert_eq!(rule(&ro, "git", "git status"), None);
    assert_eq!(rule(&ro, "git", "git log --grep push"), None);
    // shell_exec too.
    assert_eq!(
        rule(&ro, "shell", "cd r && git push").as_deref(),
        Some("read-only:git push")
    );
    // Not read-only: nothing refused.
    let rw = Policy::new(Mode::Strict, None, false).with_mutating("git", &verbs);
    assert_eq!(rule(&rw, "git", "git push"), None);
}
