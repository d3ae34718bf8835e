function __factoryctl_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __factoryctl_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __factoryctl_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __factoryctl_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __factoryctl_parse_tokens -S
    set -l unparsed_tokens (__factoryctl_tokens -pc)
    switch $unparsed_tokens[1]
    case 'factoryctl'
        __factoryctl_parse_subcommand 0 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'update'
            __factoryctl_parse_subcommand 0 'log-level=' 'q/quiet' 'v/verbose' 'factory-dir=' 'b/branch=' 'commit=' 'allow-rewind' 'service=+' 'no-sync' 'force-sync' 'settle=' 'soak=' 'app-lock-timeout=' 'ignore-app-lock' 'restart' 'n/dry-run' 'exit-code' 'wait-lock' 'fetch-timeout=' 'retry-quarantined' 'splay=' 'json' 'version' 'h/help'
        case 'publish'
            __factoryctl_parse_subcommand 2 'log-level=' 'q/quiet' 'v/verbose' 'redis-url=' 'stream=' 'canary=' 'canary-target=+' 'batch=' 'max-in-flight=' 'max-failure-rate=' 'pause=' 'max-failures=' 'rollback-on-halt' 'wave-timeout=' 'target=+' 'b/branch=' 'commit=' 'allow-rewind' 'repo=' 'no-pin' 'force' 'retry-quarantined' 'splay=' 'ignore-window' 'mission-timeout=' 'max-length=' 'wait' 'timeout=' 'n/dry-run' 'allow-unregistered' 'json' 'version' 'h/help'
        case 'consume'
            __factoryctl_parse_subcommand 0 'log-level=' 'q/quiet' 'v/verbose' 'factory-dir=' 'redis-url=' 'stream=' 'factory-id=' 'service=+' 'no-sync' 'force-sync' 'settle=' 'soak=' 'min-interval=' 'heartbeat=' 'no-restart' 'version' 'h/help'
        case 'status'
            __factoryctl_parse_subcommand 0 'log-level=' 'q/quiet' 'v/verbose' 'factory-dir=' 'fetch' 'json' 'fleet' 'job=' 'rollout=' 'redis-url=' 'stream=' 'version' 'h/help'
        case 'serve'
            __factoryctl_parse_subcommand 0 'log-level=' 'q/quiet' 'v/verbose' 'redis-url=' 'stream=' 'host=' 'port=' 'insecure-no-auth' 'version' 'h/help'
        case 'enroll'
            __factoryctl_parse_subcommand 1 'log-level=' 'q/quiet' 'v/verbose' 'redis-url=' 'stream=' 'rotate' 'acl-file=' 'factory-redis-url=' 'json' 'version' 'h/help'
        case 'bootstrap'
            __factoryctl_parse_subcommand 0 'log-level=' 'q/quiet' 'v/verbose' 'repo=' 'factory-dir=' 'b/branch=' 'commit=' 'id=' 'env-file=' 'layout=' 'no-start' 'timeout=' 'n/dry-run' 'json' 'version' 'h/help'
        case 'forget'
            __factoryctl_parse_subcommand 1 'log-level=' 'q/quiet' 'v/verbose' 'redis-url=' 'stream=' 'force' 'json' 'version' 'h/help'
        case 'keys'
            __factoryctl_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'generate'
                __factoryctl_parse_subcommand 0 'log-level=' 'q/quiet' 'v/verbose' 'out=' 'json' 'version' 'h/help'
            end
        case 'rollback'
            __factoryctl_parse_subcommand 0 'log-level=' 'q/quiet' 'v/verbose' 'factory-dir=' 'to=' 'b/branch=' 'no-restart' 'service=+' 'no-sync' 'force-sync' 'settle=' 'soak=' 'app-lock-timeout=' 'ignore-app-lock' 'n/dry-run' 'retry-quarantined' 'json' 'version' 'h/help'
        case 'releases'
            __factoryctl_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'init'
                __factoryctl_parse_subcommand 0 'log-level=' 'q/quiet' 'v/verbose' 'factory-dir=' 'no-sync' 'json' 'version' 'h/help'
            end
        case 'help'
            __factoryctl_parse_subcommand -r 1 'version'
        end
    end
end

function __factoryctl_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __factoryctl_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __factoryctl_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __factoryctl_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__factoryctl_tokens -p)
    if test -z "$(__factoryctl_tokens -t)"
        set -l index (count (__factoryctl_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'factoryctl' -f
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'update' -d 'Pull the factory\'s branch (fetch + pull --rebase), sync dependencies, optionally restart.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'publish' -d 'Publish an update, pause or resume mission on the Redis mission stream (HQ only).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'consume' -d 'Run missions from the Redis stream on this factory (the systemd service).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'status' -d 'Show the local checkout, the whole fleet (--fleet), or one mission\'s results (--job).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'serve' -d 'Run the HQ HTTP endpoint (publish updates, fleet registry, fleet page).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'enroll' -d 'Give a factory its own Redis user and registration token (HQ only).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'bootstrap' -d 'Make a new factory from the template repository: clone, .env, sync, env file, units, first registration.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'forget' -d 'Remove a decommissioned factory from the fleet and revoke its credentials (HQ only).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'keys' -d 'Manage the Ed25519 keys that sign missions.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'rollback' -d 'Move the factory back to the commit before its last successful update (or --to SHA).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'releases' -d 'The side-by-side layout: DIR/current → a complete release, the next one built beside it.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" factory-dir' -l 'factory-dir' -d 'The factory\'s git checkout (env UA_FACTORY_DIR; default: the current directory; for update and status, the checkout it is in).' -rfa '(__factoryctl_complete_directories)'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" b branch' -s 'b' -l 'branch' -d 'The branch to update to.' -rfka '(__factoryctl_custom_completion ---completion update -- --branch (count (__factoryctl_tokens -pc)) (__factoryctl_tokens -tC))'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" commit' -l 'commit' -d 'Move exactly to this commit (full id), which must be on origin\'s branch, instead of the branch\'s tip; for publish, every factory moves exactly there.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" allow-rewind' -l 'allow-rewind' -d 'Allow moving to older code, or past a force-push that dropped commits a factory runs (a deliberate rollback).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update"' -l 'service' -d 'A systemd --user service to restart (repeatable; env UA_FACTORY_SERVICE; default universal-agent-local-factory).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" no-sync' -l 'no-sync' -d 'Do not run the dependency sync (uv sync).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" force-sync' -l 'force-sync' -d 'Run the dependency sync even when no dependency file (pyproject.toml, uv.lock, ...) changed since the environment was last synced.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" settle' -l 'settle' -d 'Seconds a restarted service of Type=simple/exec must stay up before it counts as started (units that report readiness, Type=notify, are known at once).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" soak' -l 'soak' -d 'After the restart and the health gate, keep the update provisional this long: a unit that crashes or restarts, or a health URL that keeps failing, reverts it (env UA_FACTORY_SOAK_SECONDS; default 0, off).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" app-lock-timeout' -l 'app-lock-timeout' -d 'With UA_FACTORY_UPDATE_LOCK: wait this long for the app to let go of its update lock, then fail with nothing changed (env UA_FACTORY_UPDATE_LOCK_TIMEOUT; default 600; 0: do not wait).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" ignore-app-lock' -l 'ignore-app-lock' -d 'Update even while the app holds its update lock (UA_FACTORY_UPDATE_LOCK); recorded in the history and the result.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" restart' -l 'restart' -d 'Restart the services afterwards and check they are active.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" dry-run n' -s 'n' -l 'dry-run' -d 'Fetch and report what would change; change nothing else.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" exit-code' -l 'exit-code' -d 'Exit 0 only when the checkout changed; exit 11 when it was already up to date (for cron and timer wrappers, like ansible-pull\'s --only-if-changed).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" wait-lock' -l 'wait-lock' -d 'Wait for another update\'s lock instead of failing at once.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" fetch-timeout' -l 'fetch-timeout' -d 'Longest a network fetch may wait without progress (connect or read) before it is stopped (env FACTORYCTL_FETCH_TIMEOUT; default 120).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" retry-quarantined' -l 'retry-quarantined' -d 'Move to a commit that is quarantined here (it failed on this factory before), this once.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" splay' -l 'splay' -d 'Wait a random delay in [0, SECONDS) before anything else, so factories run from timers do not all fetch at once (like ansible-pull\'s --sleep; at most 3600).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" json' -l 'json' -d 'Print one JSON object instead of the summary.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl update" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" redis-url' -l 'redis-url' -d 'redis://[:password@]host:port/db, rediss://… (TLS: UA_REDIS_TLS_CA/CERT/KEY) or unix:///path.sock (env UA_REDIS_URL, else UA_REDIS_HOST/PORT/DB, REDIS_PASSWORD).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" stream' -l 'stream' -d 'Mission stream (env UA_DELEGATION_STREAM_NAME; default ua:missions:delegation).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl publish" -eq 1' -fka 'update pause resume rollback resume-rollout abort-rollout'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" canary' -l 'canary' -d 'First wave: this many factories, or a percentage (\'10%\').' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish"' -l 'canary-target' -d 'A factory for the first wave (repeatable; canaries go first).' -rfka '(__factoryctl_custom_completion ---completion publish -- --canary-target (count (__factoryctl_tokens -pc)) (__factoryctl_tokens -tC))'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" batch' -l 'batch' -d 'Each later wave: this many factories, or a percentage.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" max-in-flight' -l 'max-in-flight' -d 'A sliding window instead of batches: at most this many factories (or a percentage) updating at once; the next one gets its mission as soon as one finishes.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" max-failure-rate' -l 'max-failure-rate' -d 'With --max-in-flight: halt when more than K factories fail within SECONDS.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" pause' -l 'pause' -d 'Seconds between a successful wave and the next.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" max-failures' -l 'max-failures' -d 'Tolerate this many failed factories in all before halting (default 0: the first failure halts).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" rollback-on-halt' -l 'rollback-on-halt' -d 'When the rollout halts, send the factories that moved back to the commit each was on.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" wave-timeout' -l 'wave-timeout' -d 'Seconds a wave may take (results and re-registration); with --max-in-flight, seconds one factory may take before its slot is released and it counts as failed.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish"' -l 'target' -d 'A factory id, or one glob such as \'eu-*\' (repeatable; default: every factory).' -rfka '(__factoryctl_custom_completion ---completion publish -- --target (count (__factoryctl_tokens -pc)) (__factoryctl_tokens -tC))'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" b branch' -s 'b' -l 'branch' -d 'The branch to update to.' -rfka '(__factoryctl_custom_completion ---completion publish -- --branch (count (__factoryctl_tokens -pc)) (__factoryctl_tokens -tC))'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" commit' -l 'commit' -d 'Move exactly to this commit (full id), which must be on origin\'s branch, instead of the branch\'s tip; for publish, every factory moves exactly there.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" allow-rewind' -l 'allow-rewind' -d 'Allow moving to older code, or past a force-push that dropped commits a factory runs (a deliberate rollback).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" repo' -l 'repo' -d 'The factories\' repository, to pin an update to its branch tip now (env UA_FACTORY_REPO_URL; else the origin of UA_FACTORY_DIR\'s checkout).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" no-pin' -l 'no-pin' -d 'Do not pin: each factory takes the branch\'s tip when it fetches (the existing HQ\'s behaviour).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" force' -l 'force' -d 'Publish even if an update for these targets is in flight.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" retry-quarantined' -l 'retry-quarantined' -d 'Update missions: factories move even to a commit quarantined there (it failed on them before), this once.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" splay' -l 'splay' -d 'Update missions and rollouts: each factory waits a random delay in [0, SECONDS) before it fetches, so the fleet does not hit the git host at once (at most 3600, and less than --mission-timeout).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" ignore-window' -l 'ignore-window' -d 'Update and rollback missions, and rollouts: factories run it at once, even outside their maintenance window (UA_FACTORY_UPDATE_WINDOW).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" mission-timeout' -l 'mission-timeout' -d 'The mission\'s timeout_seconds (the consumer\'s deadline; a factory outside its maintenance window defers the mission only within it).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" max-length' -l 'max-length' -d 'Approximate MAXLEN for the stream (env UA_DELEGATION_STREAM_MAXLEN).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" wait' -l 'wait' -d 'Follow the results until every targeted, registered factory has reported.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" timeout' -l 'timeout' -d 'With --wait: give up after this many seconds.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" dry-run n' -s 'n' -l 'dry-run' -d 'List the registered factories the target matches; publish nothing.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" allow-unregistered' -l 'allow-unregistered' -d 'Publish for ids (or a glob) that match no registered factory (one that has not registered yet).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" json' -l 'json' -d 'Print one JSON object instead of text.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl publish" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" factory-dir' -l 'factory-dir' -d 'The factory\'s git checkout (env UA_FACTORY_DIR; default: the current directory; for update and status, the checkout it is in).' -rfa '(__factoryctl_complete_directories)'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" redis-url' -l 'redis-url' -d 'redis://[:password@]host:port/db, rediss://… (TLS: UA_REDIS_TLS_CA/CERT/KEY) or unix:///path.sock (env UA_REDIS_URL, else UA_REDIS_HOST/PORT/DB, REDIS_PASSWORD).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" stream' -l 'stream' -d 'Mission stream (env UA_DELEGATION_STREAM_NAME; default ua:missions:delegation).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" factory-id' -l 'factory-id' -d 'This factory\'s id (env UA_FACTORY_ID; default: the host name).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume"' -l 'service' -d 'A systemd --user service to restart (repeatable; env UA_FACTORY_SERVICE; default universal-agent-local-factory).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" no-sync' -l 'no-sync' -d 'Do not run the dependency sync (uv sync).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" force-sync' -l 'force-sync' -d 'Run the dependency sync even when no dependency file (pyproject.toml, uv.lock, ...) changed since the environment was last synced.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" settle' -l 'settle' -d 'Seconds a restarted service of Type=simple/exec must stay up before it counts as started (units that report readiness, Type=notify, are known at once).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" soak' -l 'soak' -d 'After the restart and the health gate, keep the update provisional this long: a unit that crashes or restarts, or a health URL that keeps failing, reverts it (env UA_FACTORY_SOAK_SECONDS; default 0, off).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" min-interval' -l 'min-interval' -d 'Minimum seconds between two updates (env UA_FACTORY_MIN_UPDATE_INTERVAL; default 10).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" heartbeat' -l 'heartbeat' -d 'Seconds between registry heartbeats.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" no-restart' -l 'no-restart' -d 'Do not restart services after updates (an app that is not a systemd service).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl consume" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" factory-dir' -l 'factory-dir' -d 'The factory\'s git checkout (env UA_FACTORY_DIR; default: the current directory; for update and status, the checkout it is in).' -rfa '(__factoryctl_complete_directories)'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" fetch' -l 'fetch' -d 'Fetch origin first so ahead/behind are current.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" json' -l 'json' -d 'Print JSON instead of text.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" fleet' -l 'fleet' -d 'Show every registered factory (from Redis).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" job' -l 'job' -d 'Show the per-factory results of one mission.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" rollout' -l 'rollout' -d 'Show a staged rollout: its state, waves, and where each factory is.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" redis-url' -l 'redis-url' -d 'redis://[:password@]host:port/db, rediss://… (TLS: UA_REDIS_TLS_CA/CERT/KEY) or unix:///path.sock (env UA_REDIS_URL, else UA_REDIS_HOST/PORT/DB, REDIS_PASSWORD).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" stream' -l 'stream' -d 'Mission stream (env UA_DELEGATION_STREAM_NAME; default ua:missions:delegation).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl status" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl serve" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl serve" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl serve" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl serve" redis-url' -l 'redis-url' -d 'redis://[:password@]host:port/db, rediss://… (TLS: UA_REDIS_TLS_CA/CERT/KEY) or unix:///path.sock (env UA_REDIS_URL, else UA_REDIS_HOST/PORT/DB, REDIS_PASSWORD).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl serve" stream' -l 'stream' -d 'Mission stream (env UA_DELEGATION_STREAM_NAME; default ua:missions:delegation).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl serve" host' -l 'host' -d 'Address to listen on.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl serve" port' -l 'port' -d 'Port to listen on (0 picks a free one).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl serve" insecure-no-auth' -l 'insecure-no-auth' -d 'Serve /api/v1/ without a token (never on a reachable address).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl serve" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl serve" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" redis-url' -l 'redis-url' -d 'redis://[:password@]host:port/db, rediss://… (TLS: UA_REDIS_TLS_CA/CERT/KEY) or unix:///path.sock (env UA_REDIS_URL, else UA_REDIS_HOST/PORT/DB, REDIS_PASSWORD).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" stream' -l 'stream' -d 'Mission stream (env UA_DELEGATION_STREAM_NAME; default ua:missions:delegation).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" rotate' -l 'rotate' -d 'Replace the credentials of a factory that is already enrolled.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" acl-file' -l 'acl-file' -d 'Write the ACL user\'s line to this file instead of ACL SETUSER.' -rF
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" factory-redis-url' -l 'factory-redis-url' -d 'How the factory reaches Redis (its user and password are filled in; default: this command\'s Redis URL).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" json' -l 'json' -d 'Print one JSON object instead of env lines.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl enroll" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" repo' -l 'repo' -d 'The template repository to clone (ssh://, git@host:path, https://, or a path).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" factory-dir' -l 'factory-dir' -d 'Where the factory goes: missing, empty, or already a checkout of --repo (its parent must exist).' -rfa '(__factoryctl_complete_directories)'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" b branch' -s 'b' -l 'branch' -d 'The branch the factory follows.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" commit' -l 'commit' -d 'Clone exactly this commit (full id), which must be on origin\'s branch.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" id' -l 'id' -d 'The factory id (default: the enrollment\'s UA_FACTORY_ID, else the host name).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" env-file' -l 'env-file' -d 'The lines `factoryctl enroll ID` printed at HQ (- reads them from stdin).' -rF
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" layout' -l 'layout' -d 'in-place (the checkout runs) or releases (DIR/current → releases/<commit>).' -rfka 'in-place releases'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" no-start' -l 'no-start' -d 'Do not enable or start the units, nor wait for the registration.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" timeout' -l 'timeout' -d 'Longest wait for the first registration.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" dry-run n' -s 'n' -l 'dry-run' -d 'List what bootstrap would do; change nothing.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" json' -l 'json' -d 'Print one JSON object instead of the summary.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl bootstrap" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl forget" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl forget" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl forget" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl forget" redis-url' -l 'redis-url' -d 'redis://[:password@]host:port/db, rediss://… (TLS: UA_REDIS_TLS_CA/CERT/KEY) or unix:///path.sock (env UA_REDIS_URL, else UA_REDIS_HOST/PORT/DB, REDIS_PASSWORD).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl forget" stream' -l 'stream' -d 'Mission stream (env UA_DELEGATION_STREAM_NAME; default ua:missions:delegation).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl forget" -eq 1' -fka '(__factoryctl_custom_completion ---completion forget -- positional@0 (count (__factoryctl_tokens -pc)) (__factoryctl_tokens -tC))'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl forget" force' -l 'force' -d 'Forget it even though its consumer is still heard from.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl forget" json' -l 'json' -d 'Print one JSON object instead of text.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl forget" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl forget" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl keys" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl keys" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl keys" -eq 1' -fa 'generate' -d 'Write a new mission signing key pair: DIR/mission.key (0600) and DIR/mission.pub.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl keys generate" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl keys generate" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl keys generate" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl keys generate" out' -l 'out' -d 'The directory to write mission.key and mission.pub to (created 0700 if missing).' -rfa '(__factoryctl_complete_directories)'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl keys generate" json' -l 'json' -d 'Print one JSON object instead of text.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl keys generate" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl keys generate" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" factory-dir' -l 'factory-dir' -d 'The factory\'s git checkout (env UA_FACTORY_DIR; default: the current directory; for update and status, the checkout it is in).' -rfa '(__factoryctl_complete_directories)'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" to' -l 'to' -d 'Roll back to this commit (full id) instead of the one before the last update.' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" b branch' -s 'b' -l 'branch' -d 'With --to: the branch it is on (default: the branch checked out).' -rfka '(__factoryctl_custom_completion ---completion rollback -- --branch (count (__factoryctl_tokens -pc)) (__factoryctl_tokens -tC))'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" no-restart' -l 'no-restart' -d 'Do not restart the services (and skip the health gate).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback"' -l 'service' -d 'A systemd --user service to restart (repeatable; env UA_FACTORY_SERVICE; default universal-agent-local-factory).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" no-sync' -l 'no-sync' -d 'Do not run the dependency sync (uv sync).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" force-sync' -l 'force-sync' -d 'Run the dependency sync even when no dependency file (pyproject.toml, uv.lock, ...) changed since the environment was last synced.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" settle' -l 'settle' -d 'Seconds a restarted service of Type=simple/exec must stay up before it counts as started (units that report readiness, Type=notify, are known at once).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" soak' -l 'soak' -d 'After the restart and the health gate, keep the update provisional this long: a unit that crashes or restarts, or a health URL that keeps failing, reverts it (env UA_FACTORY_SOAK_SECONDS; default 0, off).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" app-lock-timeout' -l 'app-lock-timeout' -d 'With UA_FACTORY_UPDATE_LOCK: wait this long for the app to let go of its update lock, then fail with nothing changed (env UA_FACTORY_UPDATE_LOCK_TIMEOUT; default 600; 0: do not wait).' -rfka ''
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" ignore-app-lock' -l 'ignore-app-lock' -d 'Update even while the app holds its update lock (UA_FACTORY_UPDATE_LOCK); recorded in the history and the result.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" dry-run n' -s 'n' -l 'dry-run' -d 'Say where it would go; change nothing.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" retry-quarantined' -l 'retry-quarantined' -d 'Move to a commit that is quarantined here (it failed on this factory before), this once.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" json' -l 'json' -d 'Print one JSON object instead of the summary.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl rollback" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl releases" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl releases" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_positional "factoryctl releases" -eq 1' -fa 'init' -d 'Turn an in-place checkout into DIR/current → releases/<commit>, with shared files linked in.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl releases init" log-level' -l 'log-level' -d 'Log level for messages on stderr.' -rfka 'trace debug info notice warning error critical'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl releases init" q quiet' -l 'quiet' -s 'q' -d 'Only errors on stderr (--log-level error).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl releases init" v verbose' -l 'verbose' -s 'v' -d 'Debug messages on stderr too (--log-level debug).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl releases init" factory-dir' -l 'factory-dir' -d 'The factory\'s git checkout (env UA_FACTORY_DIR; default: the current directory; for update and status, the checkout it is in).' -rfa '(__factoryctl_complete_directories)'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl releases init" no-sync' -l 'no-sync' -d 'Do not run the sync in the first release (its environment is then yours to build).'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl releases init" json' -l 'json' -d 'Print one JSON object instead of text.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl releases init" version' -l 'version' -d 'Show the version.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl releases init" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'factoryctl' -n '__factoryctl_should_offer_completions_for_flags_or_options "factoryctl help" version' -l 'version' -d 'Show the version.'
