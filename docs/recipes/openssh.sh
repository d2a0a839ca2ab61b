# recipe:openssh - SSH logins with a key that never leaves the token (ssh, ssh-agent)
# The server: $SSH_USER@$SSH_HOST port $SSH_PORT, its host key in ./known_hosts.
# OpenSSH asks for a PIN on every initialised token where it finds no key; the accelerator slot
# (module keys, no login, as on nShield) is one: hide it, as nShield users do.
export CKNFAST_NO_ACCELERATOR_SLOTS=1
# The PIN without a prompt: OpenSSH runs $SSH_ASKPASS (without this, it asks on the terminal).
printf '#!/bin/sh\necho "$PIN"\n' > askpass && chmod 700 askpass
export SSH_ASKPASS="$PWD/askpass" SSH_ASKPASS_REQUIRE=force
pkcs11-tool --module "$SO" --token-label "$TOKEN" --login --pin "$PIN" \
    --keypairgen --key-type EC:prime256v1 --label recipe-ssh --id 30
# The public key for the server's ~/.ssh/authorized_keys (this server reads ./authorized_keys).
ssh-keygen -D "$SO" > authorized_keys
ssh -o PKCS11Provider="$SO" -o UserKnownHostsFile=known_hosts -p "$SSH_PORT" "$SSH_USER@$SSH_HOST" \
    echo signed in with the token key
# ssh-agent loads only the libraries its -P list allows (by real path); ssh-add -s asks for the PIN.
eval "$(ssh-agent -s -P "$(realpath "$SO")")"
trap 'ssh-agent -k > /dev/null' EXIT
ssh-add -s "$SO"
ssh-add -L
ssh -o UserKnownHostsFile=known_hosts -p "$SSH_PORT" "$SSH_USER@$SSH_HOST" echo signed in through the agent
