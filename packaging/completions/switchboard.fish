# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_switchboard_global_optspecs
    string join \n config= listen= port= root-dialect= max-frame-bytes= outbox-capacity= max-message-rate= message-burst= rate-strikes= max-connections= max-connections-per-ip= header-read-timeout= handshake-rate= handshake-burst= http-rate= http-burst= join-timeout= stats-max-age= ping-interval= idle-timeout= write-timeout= drain-delay= shutdown-grace= resume-window= resume-buffer= resume-buffer-bytes= max-parked= cors-origin= ws-origin= ice-server= turn-secret= turn-secret-file= turn-url= turn-ttl= no-media media-listen= media-announce= media-max-transports-per-user= media-max-producers-per-user= media-max-consumers-per-user= media-max-producers-per-room= media-socket-buffer= media-workers= media-ports= media-room-spread= redis= node-id= cluster-lease= redis-prefix= bus-capacity= max-room-members= auth= auth-secret= auth-secret-file= auth-public-key= tls-cert= tls-key= tls-reload-interval= max-tls-handshakes= tls-handshake-timeout= acme-domain= acme-cache= acme-email= acme-directory= acme-directory-ca= webhook= webhook-secret= webhook-secret-file= webhook-capacity= webhook-timeout= log-level= log-format= h/help V/version
end

function __fish_switchboard_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_switchboard_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_switchboard_using_subcommand
    set -l cmd (__fish_switchboard_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c switchboard -n "__fish_switchboard_needs_command" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_needs_command" -l listen -d 'Address to listen on: HOST:PORT, :PORT or PORT [default: 0.0.0.0:8080, or PORT from env]' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l port -d 'Port alone (the seeds\' convention); --listen and SIGNALING_ADDR win over it' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l root-dialect -d 'The dialect `/` speaks to WebSocket clients' -r -f -a "conference\t''
query-rooms\t''
pairing\t''
room-relay\t''
broadcast\t''"
complete -c switchboard -n "__fish_switchboard_needs_command" -l max-frame-bytes -d 'Largest frame accepted, in bytes; larger closes the socket with 1009' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l outbox-capacity -d 'Events queued per socket before its peer is evicted as too slow (close 1008)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l max-message-rate -d 'Sustained frames per second per connection; faster frames get `rate_limited`' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l message-burst -d 'Frames a connection may send at once above the sustained rate' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l rate-strikes -d 'Rate-limited frames within one second after which the socket is closed (1008)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l max-connections -d 'Open WebSockets in total; more are refused with HTTP 503' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l max-connections-per-ip -d 'Open TCP connections per client IP, counted from accept (HTTP and WebSocket); more are answered 429 and closed' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l header-read-timeout -d 'Close a connection whose request headers have not all arrived within this long' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l handshake-rate -d 'WebSocket upgrades per second per client IP; faster ones get HTTP 429' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l handshake-burst -d 'Upgrades one client IP may make at once above --handshake-rate' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l http-rate -d 'HTTP requests per second per client IP on the API, metrics and web app; faster get 429' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l http-burst -d 'HTTP requests one client IP may make at once above --http-rate' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l join-timeout -d 'Close a conference or room-relay socket that has not joined a room within this long (1008)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l stats-max-age -d 'Serve /api/stats from a snapshot at most this old, built once for every caller' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l ping-interval -d 'How often the server pings each socket' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l idle-timeout -d 'Close a socket that sent nothing (not even a pong) for this long' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l write-timeout -d 'Evict a peer whose socket write takes longer than this' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l drain-delay -d 'On shutdown, keep /readyz at 503 and refuse new sockets this long before closing the listener' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l shutdown-grace -d 'On shutdown, how long to wait for sockets to close' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l resume-window -d 'How long a resumable session (`/conference?resume=1`) whose socket dropped stays in its room waiting for the client (at most 5 min)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l resume-buffer -d 'Frames a resumable session keeps for a replay; past it while parked, the session ends' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l resume-buffer-bytes -d 'Bytes those frames may take, whichever bound comes first' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l max-parked -d 'Sessions parked at once [default: 10 % of --max-connections]' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l cors-origin -d 'Allowed CORS origin for the HTTP API (repeatable); none means any' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l ws-origin -d 'Allowed WebSocket Origin (repeatable); none means any page may connect' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l ice-server -d 'STUN/TURN server for clients, as URL or URL|USERNAME|CREDENTIAL (repeatable)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l turn-secret -d 'Secret shared with the TURN server (coturn\'s static-auth-secret): every `joined` then carries a TURN credential minted with it, and GET /turn/credentials mints one' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l turn-secret-file -d 'File holding the TURN secret (surrounding whitespace is trimmed); keeps it out of `ps`' -r -F
complete -c switchboard -n "__fish_switchboard_needs_command" -l turn-url -d 'The TURN server\'s turn: or turns: URL, handed out with each credential (repeatable)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l turn-ttl -d 'How long a minted TURN credential stays valid' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l media-listen -d 'UDP address for media [default: the listen address, same port number]' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l media-announce -d 'IP announced to browsers in iceCandidates (set it behind NAT) [default: the media listen IP, or 127.0.0.1 when that is 0.0.0.0]' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l media-max-transports-per-user -d 'Media transports one user may hold' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l media-max-producers-per-user -d 'Producers (published tracks) one user may hold' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l media-max-consumers-per-user -d 'Consumers (received tracks) one user may hold' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l media-max-producers-per-room -d 'Producers one room may hold' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l media-socket-buffer -d 'Bytes of kernel buffer asked for the media UDP socket, receive and send each (the kernel caps it at net.core.rmem_max/wmem_max; a warning and /metrics say so)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l media-workers -d 'Media worker threads, each forwarding on its own UDP socket: the first on the media port, the others on ephemeral ports beside it. A room\'s media lives on one worker until it outgrows --media-room-spread (default: the number of cores)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l media-ports -d 'A fixed UDP port range for the media workers, FIRST-LAST: worker i binds FIRST+i (for firewalls and published container ports). It caps the workers at one per port [default: the first worker on the media port, the others on ephemeral ports]' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l media-room-spread -d 'Members of one room its media worker takes before the room spreads over the other workers (it spreads sooner once it has 400 consumers there), each later member going to the worker with the fewest of the room\'s members and producers\' packets piped between them (docs/media.md)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l redis -d 'Join a cluster on this Redis: redis://[:PASSWORD@]HOST:PORT[/DB] or redis+unix:///PATH (docs/scaling.md); without it, one node and no Redis' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l node-id -d 'This node\'s id in the cluster, 1 to 16 hex digits [default: random at start]' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l cluster-lease -d 'How long a silent node is trusted before its peers are declared gone (at least 3s)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l redis-prefix -d 'Prefix of every Redis key and channel, so clusters can share a Redis' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l bus-capacity -d 'Relays and frames that may wait for Redis; past it senders get `overloaded`' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l max-room-members -d 'The most members one room may have (across the cluster); more joins get `room_full` [default: no cap]' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l auth -d 'Whether sockets need an access token (docs/security.md): off, optional (checked when given), required (also an admin token for /api/stats, /dashboard, /metrics)' -r -f -a "off\t''
optional\t''
required\t''"
complete -c switchboard -n "__fish_switchboard_needs_command" -l auth-secret -d 'An HS256 key as KID=SECRET (repeatable, for rotation); prefer --auth-secret-file, which keeps the secret out of the process list' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l auth-secret-file -d 'An HS256 key as KID=PATH of a file holding the secret (repeatable)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l auth-public-key -d 'An EdDSA (Ed25519) or ES256 (P-256) public key as KID=PEM_PATH (repeatable)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l tls-cert -d 'Serve HTTPS and WSS with this PEM certificate chain (with --tls-key); reloaded when the file changes and on SIGHUP' -r -F
complete -c switchboard -n "__fish_switchboard_needs_command" -l tls-key -d 'The PEM private key of --tls-cert' -r -F
complete -c switchboard -n "__fish_switchboard_needs_command" -l tls-reload-interval -d 'How often the certificate files are checked for changes' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l max-tls-handshakes -d 'TLS handshakes in progress at once; connections beyond are closed at accept' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l tls-handshake-timeout -d 'Close a connection whose TLS handshake has not finished this long after accept' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l acme-domain -d 'Get a certificate for this name from an ACME CA, over TLS-ALPN-01 on the listen port (repeatable; needs --acme-cache; not with --tls-cert)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l acme-cache -d 'Directory keeping the ACME account key and certificates between runs' -r -F
complete -c switchboard -n "__fish_switchboard_needs_command" -l acme-email -d 'Contact address given to the ACME CA (repeatable)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l acme-directory -d 'The ACME CA\'s directory URL' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l acme-directory-ca -d 'Trust these PEM roots (instead of the Web PKI\'s) for the ACME directory\'s HTTPS, e.g. a test CA' -r -F
complete -c switchboard -n "__fish_switchboard_needs_command" -l webhook -d 'POST room, peer, producer and node events as signed JSON to this http:// URL (repeatable; docs/webhooks.md)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l webhook-secret -d 'Signs each webhook request (X-Switchboard-Signature, HMAC-SHA256); prefer --webhook-secret-file, which keeps it out of the process list' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l webhook-secret-file -d 'File holding the webhook secret (surrounding whitespace is trimmed)' -r -F
complete -c switchboard -n "__fish_switchboard_needs_command" -l webhook-capacity -d 'Webhook events kept per receiver while it is slow or down; past it the oldest are dropped (counted in switchboard_webhook_dropped_total)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l webhook-timeout -d 'How long one webhook delivery attempt may take before it is retried' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l log-level -d 'What to log, as a tracing filter (`info`, `debug`, `switchboard_server=debug,info`); RUST_LOG wins when set. Re-read from the config file on SIGHUP (systemctl reload)' -r
complete -c switchboard -n "__fish_switchboard_needs_command" -l log-format -d 'Log format' -r -f -a "pretty\t'Human-readable lines'
json\t'One JSON object per line'"
complete -c switchboard -n "__fish_switchboard_needs_command" -l no-media -d 'Turn the SFU (media over UDP) off; media requests then answer media_disabled'
complete -c switchboard -n "__fish_switchboard_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c switchboard -n "__fish_switchboard_needs_command" -s V -l version -d 'Print version'
complete -c switchboard -n "__fish_switchboard_needs_command" -f -a "bench" -d 'Load a signaling server on this machine and report throughput, latency and memory'
complete -c switchboard -n "__fish_switchboard_needs_command" -f -a "token" -d 'Mint an access token (a JWT) for `--auth optional|required`'
complete -c switchboard -n "__fish_switchboard_needs_command" -f -a "check-config" -d 'Check the configuration (flags, environment, --config file) and print the effective settings, secrets redacted; exits non-zero on any error'
complete -c switchboard -n "__fish_switchboard_needs_command" -f -a "example-config" -d 'Print an example config file: every setting, commented out with its default'
complete -c switchboard -n "__fish_switchboard_needs_command" -f -a "completions" -d 'Print a shell completion script: `switchboard completions bash > /etc/bash_completion.d/switchboard`'
complete -c switchboard -n "__fish_switchboard_needs_command" -f -a "man" -d 'Print the man page (roff), as packaging/switchboard.1 holds it'
complete -c switchboard -n "__fish_switchboard_needs_command" -f -a "healthcheck" -d 'Exit 0 if URL answers HTTP 200 within 5 s, else 1: a container health check that needs no curl (plain http:// only)'
complete -c switchboard -n "__fish_switchboard_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and not __fish_seen_subcommand_from relay fanout idle storm media kill compare help" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and not __fish_seen_subcommand_from relay fanout idle storm media kill compare help" -s h -l help -d 'Print help'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and not __fish_seen_subcommand_from relay fanout idle storm media kill compare help" -f -a "relay" -d 'P pairs, one room each, closed loop A→B→A with W messages in flight per pair: round trips/s and one-way latency'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and not __fish_seen_subcommand_from relay fanout idle storm media kill compare help" -f -a "fanout" -d 'One room of K peers, each sending to all (room-wide) and to each (addressed), W rounds in flight: deliveries/s and latency'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and not __fish_seen_subcommand_from relay fanout idle storm media kill compare help" -f -a "idle" -d 'N connections held open: the server\'s memory per connection and idle CPU (with --server-pid)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and not __fish_seen_subcommand_from relay fanout idle storm media kill compare help" -f -a "storm" -d 'C clients connecting and joining, `--concurrency` at a time: joins/s and time-to-joined'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and not __fish_seen_subcommand_from relay fanout idle storm media kill compare help" -f -a "media" -d 'One publisher streams one VP8 video stream through the SFU to N consumers, each its own conference user: packets forwarded/s and server CPU per forwarded packet (with --server-pid)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and not __fish_seen_subcommand_from relay fanout idle storm media kill compare help" -f -a "kill" -d 'Two nodes of a cluster (`--url SURVIVOR,VICTIM`): a watcher on the first, `--peers` members of its room on the second; SIGKILL the second (`--victim-pid`) and time every leave notice the watcher gets, to the last'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and not __fish_seen_subcommand_from relay fanout idle storm media kill compare help" -f -a "compare" -d 'One scenario against several URLs (`--url` repeated), in interleaved rounds (A B, then B A, ...), with medians and ratios to the first URL (the floor)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and not __fish_seen_subcommand_from relay fanout idle storm media kill compare help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l url -d 'Server to load: ws://HOST:PORT or wss://HOST:PORT on loopback (127.0.0.0/8, localhost, [::1]); repeat under `compare`, plain and TLS side by side if you like. Two nodes of one cluster as `A,B` split the run: client i connects to A when i is even, to B when odd (a relay pair\'s first member on A, its second on B)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l peer-url -d 'A second node for a single run: `--url A --peer-url B` is `--url A,B`' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l tls-ca -d 'PEM file of the CA (or the self-signed certificate) that wss:// URLs are checked against; the certificate must name the URL\'s host (localhost or the IP)' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l auth-secret -d 'An HS256 key as KID=SECRET, the server\'s `--auth-secret`: every client then sends its own token (`?access_token=`), granting its room and name, minted as it connects. A server without auth ignores it, so `compare` can set an `--auth required` server beside an open one with the same clients' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l dialect -d 'The dialect the clients speak (the floor speaks only query-rooms)' -r -f -a "query-rooms\t'`/ws?peer_id=ID&room=ROOM`: the URL is the join; the floor speaks it too'
conference\t'`/conference`: `join-room`, then `webrtc-offer` to a `target`'
conference-resume\t'`/conference?resume=1`: conference with session resume, so every frame is numbered and kept for a replay; relay acks every 32 frames, as the JS client does'"
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l sources -d 'Spread client sockets over source addresses 127.0.0.1 to 127.0.0.N' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l server-pid -d 'The server\'s PID, to read its memory and CPU from /proc. PID,PID,... names several processes of one server (the nodes of a split run and Redis), each reported on its own and summed. A single run takes them all as one server; under `compare`, give one --server-pid per URL, in the same order' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l concurrency -d 'Connections opened at once (the measured knob for storm)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l plot -d 'Write an SVG chart of the latency distributions to FILE' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l size -d 'Payload bytes per message (at least the ~50-byte timestamp)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l window -d 'Messages (relay) or rounds (fanout) in flight per sender' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l duration -d 'The measured window' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l warmup -d 'Load before the measured window starts, not counted' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l pairs -d 'Pairs, one room each' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -l json -d 'Print one JSON object per run (and per comparison) instead of the summary'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from relay" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l url -d 'Server to load: ws://HOST:PORT or wss://HOST:PORT on loopback (127.0.0.0/8, localhost, [::1]); repeat under `compare`, plain and TLS side by side if you like. Two nodes of one cluster as `A,B` split the run: client i connects to A when i is even, to B when odd (a relay pair\'s first member on A, its second on B)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l peer-url -d 'A second node for a single run: `--url A --peer-url B` is `--url A,B`' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l tls-ca -d 'PEM file of the CA (or the self-signed certificate) that wss:// URLs are checked against; the certificate must name the URL\'s host (localhost or the IP)' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l auth-secret -d 'An HS256 key as KID=SECRET, the server\'s `--auth-secret`: every client then sends its own token (`?access_token=`), granting its room and name, minted as it connects. A server without auth ignores it, so `compare` can set an `--auth required` server beside an open one with the same clients' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l dialect -d 'The dialect the clients speak (the floor speaks only query-rooms)' -r -f -a "query-rooms\t'`/ws?peer_id=ID&room=ROOM`: the URL is the join; the floor speaks it too'
conference\t'`/conference`: `join-room`, then `webrtc-offer` to a `target`'
conference-resume\t'`/conference?resume=1`: conference with session resume, so every frame is numbered and kept for a replay; relay acks every 32 frames, as the JS client does'"
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l sources -d 'Spread client sockets over source addresses 127.0.0.1 to 127.0.0.N' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l server-pid -d 'The server\'s PID, to read its memory and CPU from /proc. PID,PID,... names several processes of one server (the nodes of a split run and Redis), each reported on its own and summed. A single run takes them all as one server; under `compare`, give one --server-pid per URL, in the same order' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l concurrency -d 'Connections opened at once (the measured knob for storm)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l plot -d 'Write an SVG chart of the latency distributions to FILE' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l size -d 'Payload bytes per message (at least the ~50-byte timestamp)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l window -d 'Messages (relay) or rounds (fanout) in flight per sender' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l duration -d 'The measured window' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l warmup -d 'Load before the measured window starts, not counted' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l peers -d 'Peers in the room' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l mode -d 'Room-wide frames, addressed frames (one per other peer), or one run of each' -r -f -a "room-wide\t'One frame to the whole room per round'
addressed\t'One frame to each other peer per round'
both\t'A room-wide run, then an addressed run'"
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l messages -d 'Rounds each peer sends, then stops: the whole run is measured, from the first send to the last delivery, and --warmup and --duration are ignored (default: timed)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -l json -d 'Print one JSON object per run (and per comparison) instead of the summary'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from fanout" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l url -d 'Server to load: ws://HOST:PORT or wss://HOST:PORT on loopback (127.0.0.0/8, localhost, [::1]); repeat under `compare`, plain and TLS side by side if you like. Two nodes of one cluster as `A,B` split the run: client i connects to A when i is even, to B when odd (a relay pair\'s first member on A, its second on B)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l peer-url -d 'A second node for a single run: `--url A --peer-url B` is `--url A,B`' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l tls-ca -d 'PEM file of the CA (or the self-signed certificate) that wss:// URLs are checked against; the certificate must name the URL\'s host (localhost or the IP)' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l auth-secret -d 'An HS256 key as KID=SECRET, the server\'s `--auth-secret`: every client then sends its own token (`?access_token=`), granting its room and name, minted as it connects. A server without auth ignores it, so `compare` can set an `--auth required` server beside an open one with the same clients' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l dialect -d 'The dialect the clients speak (the floor speaks only query-rooms)' -r -f -a "query-rooms\t'`/ws?peer_id=ID&room=ROOM`: the URL is the join; the floor speaks it too'
conference\t'`/conference`: `join-room`, then `webrtc-offer` to a `target`'
conference-resume\t'`/conference?resume=1`: conference with session resume, so every frame is numbered and kept for a replay; relay acks every 32 frames, as the JS client does'"
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l sources -d 'Spread client sockets over source addresses 127.0.0.1 to 127.0.0.N' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l server-pid -d 'The server\'s PID, to read its memory and CPU from /proc. PID,PID,... names several processes of one server (the nodes of a split run and Redis), each reported on its own and summed. A single run takes them all as one server; under `compare`, give one --server-pid per URL, in the same order' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l concurrency -d 'Connections opened at once (the measured knob for storm)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l plot -d 'Write an SVG chart of the latency distributions to FILE' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l connections -d 'Connections to hold, each in its own room' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l hold -d 'How long to hold them once all are open' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -l json -d 'Print one JSON object per run (and per comparison) instead of the summary'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from idle" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l url -d 'Server to load: ws://HOST:PORT or wss://HOST:PORT on loopback (127.0.0.0/8, localhost, [::1]); repeat under `compare`, plain and TLS side by side if you like. Two nodes of one cluster as `A,B` split the run: client i connects to A when i is even, to B when odd (a relay pair\'s first member on A, its second on B)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l peer-url -d 'A second node for a single run: `--url A --peer-url B` is `--url A,B`' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l tls-ca -d 'PEM file of the CA (or the self-signed certificate) that wss:// URLs are checked against; the certificate must name the URL\'s host (localhost or the IP)' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l auth-secret -d 'An HS256 key as KID=SECRET, the server\'s `--auth-secret`: every client then sends its own token (`?access_token=`), granting its room and name, minted as it connects. A server without auth ignores it, so `compare` can set an `--auth required` server beside an open one with the same clients' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l dialect -d 'The dialect the clients speak (the floor speaks only query-rooms)' -r -f -a "query-rooms\t'`/ws?peer_id=ID&room=ROOM`: the URL is the join; the floor speaks it too'
conference\t'`/conference`: `join-room`, then `webrtc-offer` to a `target`'
conference-resume\t'`/conference?resume=1`: conference with session resume, so every frame is numbered and kept for a replay; relay acks every 32 frames, as the JS client does'"
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l sources -d 'Spread client sockets over source addresses 127.0.0.1 to 127.0.0.N' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l server-pid -d 'The server\'s PID, to read its memory and CPU from /proc. PID,PID,... names several processes of one server (the nodes of a split run and Redis), each reported on its own and summed. A single run takes them all as one server; under `compare`, give one --server-pid per URL, in the same order' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l concurrency -d 'Connections opened at once (the measured knob for storm)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l plot -d 'Write an SVG chart of the latency distributions to FILE' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l clients -d 'Clients, joining rooms of two' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -l json -d 'Print one JSON object per run (and per comparison) instead of the summary'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from storm" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l url -d 'Server to load: ws://HOST:PORT or wss://HOST:PORT on loopback (127.0.0.0/8, localhost, [::1]); repeat under `compare`, plain and TLS side by side if you like. Two nodes of one cluster as `A,B` split the run: client i connects to A when i is even, to B when odd (a relay pair\'s first member on A, its second on B)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l peer-url -d 'A second node for a single run: `--url A --peer-url B` is `--url A,B`' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l tls-ca -d 'PEM file of the CA (or the self-signed certificate) that wss:// URLs are checked against; the certificate must name the URL\'s host (localhost or the IP)' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l auth-secret -d 'An HS256 key as KID=SECRET, the server\'s `--auth-secret`: every client then sends its own token (`?access_token=`), granting its room and name, minted as it connects. A server without auth ignores it, so `compare` can set an `--auth required` server beside an open one with the same clients' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l sources -d 'Spread client sockets over source addresses 127.0.0.1 to 127.0.0.N' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l server-pid -d 'The server\'s PID, to read its memory and CPU from /proc. PID,PID,... names several processes of one server (the nodes of a split run and Redis), each reported on its own and summed. A single run takes them all as one server; under `compare`, give one --server-pid per URL, in the same order' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l concurrency -d 'Connections opened at once (the measured knob for storm)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l plot -d 'Write an SVG chart of the latency distributions to FILE' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l consumers -d 'Consumers of the stream, each its own user with its own WebSocket, receive transport and UDP socket' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l rooms -d 'Rooms, each with a publisher of its own; consumer `i` watches room `i mod R`. The server places rooms on its media workers (`--media-workers`), so several rooms load several workers' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l rate -d 'Packets per second each publisher writes (250 × 1,100 bytes is a ~2.2 Mbps 720p camera)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l size -d 'RTP payload bytes per packet' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l duration -d 'The measured window' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l warmup -d 'Streaming before the measured window starts, not counted' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l dialect -d 'The dialect the clients speak (the floor speaks only query-rooms)' -r -f -a "query-rooms\t'`/ws?peer_id=ID&room=ROOM`: the URL is the join; the floor speaks it too'
conference\t'`/conference`: `join-room`, then `webrtc-offer` to a `target`'
conference-resume\t'`/conference?resume=1`: conference with session resume, so every frame is numbered and kept for a replay; relay acks every 32 frames, as the JS client does'"
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -l json -d 'Print one JSON object per run (and per comparison) instead of the summary'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from media" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l url -d 'Server to load: ws://HOST:PORT or wss://HOST:PORT on loopback (127.0.0.0/8, localhost, [::1]); repeat under `compare`, plain and TLS side by side if you like. Two nodes of one cluster as `A,B` split the run: client i connects to A when i is even, to B when odd (a relay pair\'s first member on A, its second on B)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l peer-url -d 'A second node for a single run: `--url A --peer-url B` is `--url A,B`' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l tls-ca -d 'PEM file of the CA (or the self-signed certificate) that wss:// URLs are checked against; the certificate must name the URL\'s host (localhost or the IP)' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l auth-secret -d 'An HS256 key as KID=SECRET, the server\'s `--auth-secret`: every client then sends its own token (`?access_token=`), granting its room and name, minted as it connects. A server without auth ignores it, so `compare` can set an `--auth required` server beside an open one with the same clients' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l sources -d 'Spread client sockets over source addresses 127.0.0.1 to 127.0.0.N' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l server-pid -d 'The server\'s PID, to read its memory and CPU from /proc. PID,PID,... names several processes of one server (the nodes of a split run and Redis), each reported on its own and summed. A single run takes them all as one server; under `compare`, give one --server-pid per URL, in the same order' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l concurrency -d 'Connections opened at once (the measured knob for storm)' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l plot -d 'Write an SVG chart of the latency distributions to FILE' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l victim-pid -d 'The victim node\'s PID, sent SIGKILL once the room is set up; it must be a process named `switchboard`' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l peers -d 'Members of the watcher\'s room on the victim node' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l wait -d 'How long to wait for the last leave notice after the kill' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l dialect -d 'The dialect the clients speak (the floor speaks only query-rooms)' -r -f -a "query-rooms\t'`/ws?peer_id=ID&room=ROOM`: the URL is the join; the floor speaks it too'
conference\t'`/conference`: `join-room`, then `webrtc-offer` to a `target`'
conference-resume\t'`/conference?resume=1`: conference with session resume, so every frame is numbered and kept for a replay; relay acks every 32 frames, as the JS client does'"
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -l json -d 'Print one JSON object per run (and per comparison) instead of the summary'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from kill" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from compare" -l rounds -d 'Rounds; each runs every URL once, in the order given, every other round in reverse' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from compare" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from compare" -s h -l help -d 'Print help'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from compare" -f -a "relay" -d 'P pairs, one room each, closed loop A→B→A with W messages in flight per pair: round trips/s and one-way latency'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from compare" -f -a "fanout" -d 'One room of K peers, each sending to all (room-wide) and to each (addressed), W rounds in flight: deliveries/s and latency'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from compare" -f -a "idle" -d 'N connections held open: the server\'s memory per connection and idle CPU (with --server-pid)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from compare" -f -a "storm" -d 'C clients connecting and joining, `--concurrency` at a time: joins/s and time-to-joined'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from compare" -f -a "media" -d 'One publisher streams one VP8 video stream through the SFU to N consumers, each its own conference user: packets forwarded/s and server CPU per forwarded packet (with --server-pid)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from compare" -f -a "kill" -d 'Two nodes of a cluster (`--url SURVIVOR,VICTIM`): a watcher on the first, `--peers` members of its room on the second; SIGKILL the second (`--victim-pid`) and time every leave notice the watcher gets, to the last'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from compare" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "relay" -d 'P pairs, one room each, closed loop A→B→A with W messages in flight per pair: round trips/s and one-way latency'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "fanout" -d 'One room of K peers, each sending to all (room-wide) and to each (addressed), W rounds in flight: deliveries/s and latency'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "idle" -d 'N connections held open: the server\'s memory per connection and idle CPU (with --server-pid)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "storm" -d 'C clients connecting and joining, `--concurrency` at a time: joins/s and time-to-joined'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "media" -d 'One publisher streams one VP8 video stream through the SFU to N consumers, each its own conference user: packets forwarded/s and server CPU per forwarded packet (with --server-pid)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "kill" -d 'Two nodes of a cluster (`--url SURVIVOR,VICTIM`): a watcher on the first, `--peers` members of its room on the second; SIGKILL the second (`--victim-pid`) and time every leave notice the watcher gets, to the last'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "compare" -d 'One scenario against several URLs (`--url` repeated), in interleaved rounds (A B, then B A, ...), with medians and ratios to the first URL (the floor)'
complete -c switchboard -n "__fish_switchboard_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l secret-file -d 'File holding the HS256 secret (the server\'s --auth-secret-file for this key id)' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l key-file -d 'PEM private key (Ed25519 signs EdDSA tokens, P-256 ES256 ones), whose public key the server has under this key id (--auth-public-key)' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l kid -d 'The key id the server knows the key by' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l sub -d 'The subject (who the token is for) [default: --name]' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l room -d 'The room it may join: an id, PREFIX* or * [default: none]' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l name -d 'The name it joins under [default: --sub]' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l dialect -d 'Dialects it may use (repeatable: conference, room-relay, query-rooms, pairing, broadcast) [default: all]' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l channel -d 'The broadcast channel it may subscribe to: a name, PREFIX* or * [default: none]' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l ttl -d 'How long the token is valid' -r
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l publish -d 'May publish media (SFU produce)'
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l subscribe -d 'May receive media (SFU consume)'
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l pair -d 'May use /pairing'
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -l admin -d 'May read /api/stats, /dashboard and /metrics when tokens are required'
complete -c switchboard -n "__fish_switchboard_using_subcommand token" -s h -l help -d 'Print help'
complete -c switchboard -n "__fish_switchboard_using_subcommand check-config" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c switchboard -n "__fish_switchboard_using_subcommand example-config" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand example-config" -s h -l help -d 'Print help'
complete -c switchboard -n "__fish_switchboard_using_subcommand completions" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand completions" -s h -l help -d 'Print help'
complete -c switchboard -n "__fish_switchboard_using_subcommand man" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand man" -s h -l help -d 'Print help'
complete -c switchboard -n "__fish_switchboard_using_subcommand healthcheck" -l config -d 'Read settings from this TOML file, whose keys are these flags\' long names (packaging/switchboard.toml); a flag or an environment variable wins over the file' -r -F
complete -c switchboard -n "__fish_switchboard_using_subcommand healthcheck" -s h -l help -d 'Print help'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and not __fish_seen_subcommand_from bench token check-config example-config completions man healthcheck help" -f -a "bench" -d 'Load a signaling server on this machine and report throughput, latency and memory'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and not __fish_seen_subcommand_from bench token check-config example-config completions man healthcheck help" -f -a "token" -d 'Mint an access token (a JWT) for `--auth optional|required`'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and not __fish_seen_subcommand_from bench token check-config example-config completions man healthcheck help" -f -a "check-config" -d 'Check the configuration (flags, environment, --config file) and print the effective settings, secrets redacted; exits non-zero on any error'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and not __fish_seen_subcommand_from bench token check-config example-config completions man healthcheck help" -f -a "example-config" -d 'Print an example config file: every setting, commented out with its default'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and not __fish_seen_subcommand_from bench token check-config example-config completions man healthcheck help" -f -a "completions" -d 'Print a shell completion script: `switchboard completions bash > /etc/bash_completion.d/switchboard`'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and not __fish_seen_subcommand_from bench token check-config example-config completions man healthcheck help" -f -a "man" -d 'Print the man page (roff), as packaging/switchboard.1 holds it'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and not __fish_seen_subcommand_from bench token check-config example-config completions man healthcheck help" -f -a "healthcheck" -d 'Exit 0 if URL answers HTTP 200 within 5 s, else 1: a container health check that needs no curl (plain http:// only)'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and not __fish_seen_subcommand_from bench token check-config example-config completions man healthcheck help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "relay" -d 'P pairs, one room each, closed loop A→B→A with W messages in flight per pair: round trips/s and one-way latency'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "fanout" -d 'One room of K peers, each sending to all (room-wide) and to each (addressed), W rounds in flight: deliveries/s and latency'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "idle" -d 'N connections held open: the server\'s memory per connection and idle CPU (with --server-pid)'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "storm" -d 'C clients connecting and joining, `--concurrency` at a time: joins/s and time-to-joined'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "media" -d 'One publisher streams one VP8 video stream through the SFU to N consumers, each its own conference user: packets forwarded/s and server CPU per forwarded packet (with --server-pid)'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "kill" -d 'Two nodes of a cluster (`--url SURVIVOR,VICTIM`): a watcher on the first, `--peers` members of its room on the second; SIGKILL the second (`--victim-pid`) and time every leave notice the watcher gets, to the last'
complete -c switchboard -n "__fish_switchboard_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "compare" -d 'One scenario against several URLs (`--url` repeated), in interleaved rounds (A B, then B A, ...), with medians and ratios to the first URL (the floor)'
