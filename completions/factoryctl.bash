#!/bin/bash

__factoryctl_cursor_index_in_current_word() {
    local remaining="${COMP_LINE}"

    local word
    for word in "${COMP_WORDS[@]::COMP_CWORD}"; do
        remaining="${remaining##*([[:space:]])"${word}"*([[:space:]])}"
    done

    local -ir index="$((COMP_POINT - ${#COMP_LINE} + ${#remaining}))"
    if [[ "${index}" -le 0 ]]; then
        printf 0
    else
        printf %s "${index}"
    fi
}

# positional arguments:
#
# - 1: the current (sub)command's count of positional arguments
#
# required variables:
#
# - repeating_flags: the repeating flags that the current (sub)command can accept
# - non_repeating_flags: the non-repeating flags that the current (sub)command can accept
# - repeating_options: the repeating options that the current (sub)command can accept
# - non_repeating_options: the non-repeating options that the current (sub)command can accept
# - positional_number: value ignored
# - unparsed_words: unparsed words from the current command line
#
# modified variables:
#
# - non_repeating_flags: remove flags for this (sub)command that are already on the command line
# - non_repeating_options: remove options for this (sub)command that are already on the command line
# - positional_number: set to the current positional number
# - unparsed_words: remove all flags, options, and option values for this (sub)command
__factoryctl_offer_flags_options() {
    local -ir positional_count="${1}"
    positional_number=0

    local was_flag_option_terminator_seen=false
    local is_parsing_option_value=false

    local -ar unparsed_word_indices=("${!unparsed_words[@]}")
    local -i word_index
    for word_index in "${unparsed_word_indices[@]}"; do
        if "${is_parsing_option_value}"; then
            # This word is an option value:
            # Reset marker for next word iff not currently the last word
            [[ "${word_index}" -ne "${unparsed_word_indices[${#unparsed_word_indices[@]} - 1]}" ]] && is_parsing_option_value=false
            unset "unparsed_words[${word_index}]"
            # Do not process this word as a flag or an option
            continue
        fi

        local word="${unparsed_words["${word_index}"]}"
        if ! "${was_flag_option_terminator_seen}"; then
            case "${word}" in
            --)
                unset "unparsed_words[${word_index}]"
                # by itself -- is a flag/option terminator, but if it is the last word, it is the start of a completion
                if [[ "${word_index}" -ne "${unparsed_word_indices[${#unparsed_word_indices[@]} - 1]}" ]]; then
                    was_flag_option_terminator_seen=true
                fi
                continue
                ;;
            -*)
                # ${word} is a flag or an option
                # If ${word} is an option, mark that the next word to be parsed is an option value
                local option
                for option in "${repeating_options[@]}" "${non_repeating_options[@]}"; do
                    [[ "${word}" = "${option}" ]] && is_parsing_option_value=true && break
                done

                # Remove ${word} from ${non_repeating_flags} or ${non_repeating_options} so it isn't offered again
                local not_found=true
                local -i index
                for index in "${!non_repeating_flags[@]}"; do
                    if [[ "${non_repeating_flags[${index}]}" = "${word}" ]]; then
                        unset "non_repeating_flags[${index}]"
                        non_repeating_flags=("${non_repeating_flags[@]}")
                        not_found=false
                        break
                    fi
                done
                if "${not_found}"; then
                    for index in "${!non_repeating_flags[@]}"; do
                        if [[ "${non_repeating_flags[${index}]}" = "${word}" ]]; then
                            unset "non_repeating_flags[${index}]"
                            non_repeating_flags=("${non_repeating_flags[@]}")
                            break
                        fi
                    done
                fi
                unset "unparsed_words[${word_index}]"
                continue
                ;;
            esac
        fi

        # ${word} is neither a flag, nor an option, nor an option value
        if [[ "${positional_number}" -lt "${positional_count}" || "${positional_count}" -lt 0 ]]; then
            # ${word} is a positional
            ((positional_number++))
            unset "unparsed_words[${word_index}]"
        else
            if [[ -z "${word}" ]]; then
                # Could be completing a flag, option, or subcommand
                positional_number=-1
            else
                # ${word} is a subcommand or invalid, so stop processing this (sub)command
                positional_number=-2
            fi
            break
        fi
    done

    unparsed_words=("${unparsed_words[@]}")

    if\
        ! "${was_flag_option_terminator_seen}"\
        && ! "${is_parsing_option_value}"\
        && [[ ("${cur}" = -* && "${positional_number}" -ge 0) || "${positional_number}" -eq -1 ]]
    then
        COMPREPLY+=($(compgen -W "${repeating_flags[*]} ${non_repeating_flags[*]} ${repeating_options[*]} ${non_repeating_options[*]}" -- "${cur}"))
    fi
}

__factoryctl_add_completions() {
    local completion
    while IFS='' read -r completion; do
        COMPREPLY+=("${completion}")
    done < <(IFS=$'\n' compgen "${@}" -- "${cur}")
}

__factoryctl_custom_complete() {
    if [[ -n "${cur}" || -z ${COMP_WORDS[${COMP_CWORD}]} || "${COMP_LINE:${COMP_POINT}:1}" != ' ' ]]; then
        local -ar words=("${COMP_WORDS[@]}")
    else
        local -ar words=("${COMP_WORDS[@]::${COMP_CWORD}}" '' "${COMP_WORDS[@]:${COMP_CWORD}}")
    fi

    "${COMP_WORDS[0]}" "${@}" "${words[@]}"
}

_factoryctl() {
    local state
    state="$(shopt -p;shopt -po)"
    trap "${state//$'\n'/;}" RETURN
    shopt -s extglob
    set +o history +o posix

    local -xr SAP_SHELL=bash
    local -x SAP_SHELL_VERSION
    SAP_SHELL_VERSION="$(IFS='.';printf %s "${BASH_VERSINFO[*]}")"
    local -r SAP_SHELL_VERSION

    local -r cur="${2}"
    local -r prev="${3}"

    local -i positional_number
    local -a unparsed_words=("${COMP_WORDS[@]:1:${COMP_CWORD}}")

    local -a repeating_flags=()
    local -a non_repeating_flags=(--version -h --help)
    local -a repeating_options=()
    local -a non_repeating_options=()
    __factoryctl_offer_flags_options 0

    # Offer subcommand / subcommand argument completions
    local -r subcommand="${unparsed_words[0]}"
    unset 'unparsed_words[0]'
    unparsed_words=("${unparsed_words[@]}")
    case "${subcommand}" in
    update|publish|consume|status|serve|enroll|bootstrap|forget|keys|rollback|releases|help)
        # Offer subcommand argument completions
        "_factoryctl_${subcommand}"
        ;;
    *)
        # Offer subcommand completions
        COMPREPLY+=($(compgen -W 'update publish consume status serve enroll bootstrap forget keys rollback releases help' -- "${cur}"))
        ;;
    esac
}

_factoryctl_update() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --allow-rewind --no-sync --force-sync --ignore-app-lock --restart -n --dry-run --exit-code --wait-lock --retry-quarantined --json --version -h --help)
    repeating_options=(--service)
    non_repeating_options=(--log-level --factory-dir -b --branch --commit --settle --soak --app-lock-timeout --fetch-timeout --splay)
    __factoryctl_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--factory-dir')
        __factoryctl_add_completions -d
        return
        ;;
    '-b'|'--branch')
        __factoryctl_add_completions -W "$(__factoryctl_custom_complete ---completion update -- --branch "${COMP_CWORD}" "$(__factoryctl_cursor_index_in_current_word)")"
        return
        ;;
    '--commit')
        return
        ;;
    '--service')
        return
        ;;
    '--settle')
        return
        ;;
    '--soak')
        return
        ;;
    '--app-lock-timeout')
        return
        ;;
    '--fetch-timeout')
        return
        ;;
    '--splay')
        return
        ;;
    esac
}

_factoryctl_publish() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --rollback-on-halt --allow-rewind --no-pin --force --retry-quarantined --ignore-window --wait -n --dry-run --allow-unregistered --json --version -h --help)
    repeating_options=(--canary-target --target)
    non_repeating_options=(--log-level --redis-url --stream --canary --batch --max-in-flight --max-failure-rate --pause --max-failures --wave-timeout -b --branch --commit --repo --splay --mission-timeout --max-length --timeout)
    __factoryctl_offer_flags_options 2

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--redis-url')
        return
        ;;
    '--stream')
        return
        ;;
    '--canary')
        return
        ;;
    '--canary-target')
        __factoryctl_add_completions -W "$(__factoryctl_custom_complete ---completion publish -- --canary-target "${COMP_CWORD}" "$(__factoryctl_cursor_index_in_current_word)")"
        return
        ;;
    '--batch')
        return
        ;;
    '--max-in-flight')
        return
        ;;
    '--max-failure-rate')
        return
        ;;
    '--pause')
        return
        ;;
    '--max-failures')
        return
        ;;
    '--wave-timeout')
        return
        ;;
    '--target')
        __factoryctl_add_completions -W "$(__factoryctl_custom_complete ---completion publish -- --target "${COMP_CWORD}" "$(__factoryctl_cursor_index_in_current_word)")"
        return
        ;;
    '-b'|'--branch')
        __factoryctl_add_completions -W "$(__factoryctl_custom_complete ---completion publish -- --branch "${COMP_CWORD}" "$(__factoryctl_cursor_index_in_current_word)")"
        return
        ;;
    '--commit')
        return
        ;;
    '--repo')
        return
        ;;
    '--splay')
        return
        ;;
    '--mission-timeout')
        return
        ;;
    '--max-length')
        return
        ;;
    '--timeout')
        return
        ;;
    esac

    # Offer positional completions
    case "${positional_number}" in
    1)
        __factoryctl_add_completions -W 'update'$'\n''pause'$'\n''resume'$'\n''rollback'$'\n''resume-rollout'$'\n''abort-rollout'
        return
        ;;
    esac
}

_factoryctl_consume() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --no-sync --force-sync --no-restart --version -h --help)
    repeating_options=(--service)
    non_repeating_options=(--log-level --factory-dir --redis-url --stream --factory-id --settle --soak --min-interval --heartbeat)
    __factoryctl_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--factory-dir')
        __factoryctl_add_completions -d
        return
        ;;
    '--redis-url')
        return
        ;;
    '--stream')
        return
        ;;
    '--factory-id')
        return
        ;;
    '--service')
        return
        ;;
    '--settle')
        return
        ;;
    '--soak')
        return
        ;;
    '--min-interval')
        return
        ;;
    '--heartbeat')
        return
        ;;
    esac
}

_factoryctl_status() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --fetch --json --fleet --version -h --help)
    repeating_options=()
    non_repeating_options=(--log-level --factory-dir --job --rollout --redis-url --stream)
    __factoryctl_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--factory-dir')
        __factoryctl_add_completions -d
        return
        ;;
    '--job')
        return
        ;;
    '--rollout')
        return
        ;;
    '--redis-url')
        return
        ;;
    '--stream')
        return
        ;;
    esac
}

_factoryctl_serve() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --insecure-no-auth --version -h --help)
    repeating_options=()
    non_repeating_options=(--log-level --redis-url --stream --host --port)
    __factoryctl_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--redis-url')
        return
        ;;
    '--stream')
        return
        ;;
    '--host')
        return
        ;;
    '--port')
        return
        ;;
    esac
}

_factoryctl_enroll() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --rotate --json --version -h --help)
    repeating_options=()
    non_repeating_options=(--log-level --redis-url --stream --acl-file --factory-redis-url)
    __factoryctl_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--redis-url')
        return
        ;;
    '--stream')
        return
        ;;
    '--acl-file')
        __factoryctl_add_completions -f
        return
        ;;
    '--factory-redis-url')
        return
        ;;
    esac
}

_factoryctl_bootstrap() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --no-start -n --dry-run --json --version -h --help)
    repeating_options=()
    non_repeating_options=(--log-level --repo --factory-dir -b --branch --commit --id --env-file --layout --timeout)
    __factoryctl_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--repo')
        return
        ;;
    '--factory-dir')
        __factoryctl_add_completions -d
        return
        ;;
    '-b'|'--branch')
        return
        ;;
    '--commit')
        return
        ;;
    '--id')
        return
        ;;
    '--env-file')
        __factoryctl_add_completions -f
        return
        ;;
    '--layout')
        __factoryctl_add_completions -W 'in-place'$'\n''releases'
        return
        ;;
    '--timeout')
        return
        ;;
    esac
}

_factoryctl_forget() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --force --json --version -h --help)
    repeating_options=()
    non_repeating_options=(--log-level --redis-url --stream)
    __factoryctl_offer_flags_options 1

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--redis-url')
        return
        ;;
    '--stream')
        return
        ;;
    esac

    # Offer positional completions
    case "${positional_number}" in
    1)
        __factoryctl_add_completions -W "$(__factoryctl_custom_complete ---completion forget -- positional@0 "${COMP_CWORD}" "$(__factoryctl_cursor_index_in_current_word)")"
        return
        ;;
    esac
}

_factoryctl_keys() {
    repeating_flags=()
    non_repeating_flags=(--version -h --help)
    repeating_options=()
    non_repeating_options=()
    __factoryctl_offer_flags_options 0

    # Offer subcommand / subcommand argument completions
    local -r subcommand="${unparsed_words[0]}"
    unset 'unparsed_words[0]'
    unparsed_words=("${unparsed_words[@]}")
    case "${subcommand}" in
    generate)
        # Offer subcommand argument completions
        "_factoryctl_keys_${subcommand}"
        ;;
    *)
        # Offer subcommand completions
        COMPREPLY+=($(compgen -W 'generate' -- "${cur}"))
        ;;
    esac
}

_factoryctl_keys_generate() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --json --version -h --help)
    repeating_options=()
    non_repeating_options=(--log-level --out)
    __factoryctl_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--out')
        __factoryctl_add_completions -d
        return
        ;;
    esac
}

_factoryctl_rollback() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --no-restart --no-sync --force-sync --ignore-app-lock -n --dry-run --retry-quarantined --json --version -h --help)
    repeating_options=(--service)
    non_repeating_options=(--log-level --factory-dir --to -b --branch --settle --soak --app-lock-timeout)
    __factoryctl_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--factory-dir')
        __factoryctl_add_completions -d
        return
        ;;
    '--to')
        return
        ;;
    '-b'|'--branch')
        __factoryctl_add_completions -W "$(__factoryctl_custom_complete ---completion rollback -- --branch "${COMP_CWORD}" "$(__factoryctl_cursor_index_in_current_word)")"
        return
        ;;
    '--service')
        return
        ;;
    '--settle')
        return
        ;;
    '--soak')
        return
        ;;
    '--app-lock-timeout')
        return
        ;;
    esac
}

_factoryctl_releases() {
    repeating_flags=()
    non_repeating_flags=(--version -h --help)
    repeating_options=()
    non_repeating_options=()
    __factoryctl_offer_flags_options 0

    # Offer subcommand / subcommand argument completions
    local -r subcommand="${unparsed_words[0]}"
    unset 'unparsed_words[0]'
    unparsed_words=("${unparsed_words[@]}")
    case "${subcommand}" in
    init)
        # Offer subcommand argument completions
        "_factoryctl_releases_${subcommand}"
        ;;
    *)
        # Offer subcommand completions
        COMPREPLY+=($(compgen -W 'init' -- "${cur}"))
        ;;
    esac
}

_factoryctl_releases_init() {
    repeating_flags=()
    non_repeating_flags=(--quiet -q --verbose -v --no-sync --json --version -h --help)
    repeating_options=()
    non_repeating_options=(--log-level --factory-dir)
    __factoryctl_offer_flags_options 0

    # Offer option value completions
    case "${prev}" in
    '--log-level')
        __factoryctl_add_completions -W 'trace'$'\n''debug'$'\n''info'$'\n''notice'$'\n''warning'$'\n''error'$'\n''critical'
        return
        ;;
    '--factory-dir')
        __factoryctl_add_completions -d
        return
        ;;
    esac
}

_factoryctl_help() {
    repeating_flags=()
    non_repeating_flags=(--version)
    repeating_options=()
    non_repeating_options=()
    __factoryctl_offer_flags_options -1
}

complete -o filenames -F _factoryctl factoryctl
