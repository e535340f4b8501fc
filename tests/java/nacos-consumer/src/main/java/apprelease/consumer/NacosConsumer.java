package apprelease.consumer;

import com.alibaba.nacos.api.NacosFactory;
import com.alibaba.nacos.api.PropertyKeyConst;
import com.alibaba.nacos.api.naming.NamingService;
import com.alibaba.nacos.api.naming.listener.NamingEvent;
import com.alibaba.nacos.api.naming.pojo.Instance;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.locks.LockSupport;
import java.util.stream.Collectors;

/**
 * Subscribes to one Nacos service and picks an instance every few milliseconds with
 * NamingService.selectOneHealthyInstance (the client's weighted-random balancer), printing one
 * line per pick to stdout, flushed at once:
 *
 * <pre>
 *   EPOCH_MS pick IP:PORT TRACK REVISION     (metadata apprelease.io/track, /revision; "-" if absent)
 *   EPOCH_MS none REASON                     (the client threw: nothing to pick)
 *   EPOCH_MS push N IP:PORT:WEIGHT:HEALTHY:ENABLED,...   (what a push from Nacos listed)
 *   EPOCH_MS started                          (subscribed; picks follow)
 * </pre>
 *
 * Options: --server-addr A[,B] --namespace NS --group G --service S [--interval-ms N]
 * [--duration-s N]. Credentials only from the environment (NACOS_USERNAME, NACOS_PASSWORD),
 * never from arguments, and never printed.
 */
public final class NacosConsumer {
    static final String TRACK = "apprelease.io/track";
    static final String REVISION = "apprelease.io/revision";

    private NacosConsumer() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> options = parse(args);
        String service = required(options, "service");
        String group = options.getOrDefault("group", "DEFAULT_GROUP");
        long intervalNanos = Long.parseLong(options.getOrDefault("interval-ms", "3")) * 1_000_000L;
        long durationMs = Long.parseLong(options.getOrDefault("duration-s", "0")) * 1000L;

        Properties properties = new Properties();
        properties.setProperty(PropertyKeyConst.SERVER_ADDR, required(options, "server-addr"));
        properties.setProperty(PropertyKeyConst.NAMESPACE, options.getOrDefault("namespace", "public"));
        String username = System.getenv("NACOS_USERNAME");
        if (username != null && !username.isEmpty()) {
            properties.setProperty(PropertyKeyConst.USERNAME, username);
            properties.setProperty(PropertyKeyConst.PASSWORD, System.getenv().getOrDefault("NACOS_PASSWORD", ""));
        }
        // Start from what the server says, not from a cache a previous run left on disk.
        properties.setProperty(PropertyKeyConst.NAMING_LOAD_CACHE_AT_START, "false");

        PrintWriter out = new PrintWriter(new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8)));
        NamingService naming = NacosFactory.createNamingService(properties);
        naming.subscribe(service, group, event -> {
            if (event instanceof NamingEvent) {
                String listed = ((NamingEvent) event).getInstances().stream()
                        .map(i -> i.getIp() + ":" + i.getPort() + ":" + i.getWeight() + ":" + i.isHealthy() + ":" + i.isEnabled())
                        .collect(Collectors.joining(","));
                emit(out, ((NamingEvent) event).getInstances().size() + " " + listed, "push");
            }
        });
        emit(out, "", "started");
        long deadline = durationMs > 0 ? System.currentTimeMillis() + durationMs : Long.MAX_VALUE;
        while (System.currentTimeMillis() < deadline && !out.checkError()) {
            String line;
            try {
                Instance picked = naming.selectOneHealthyInstance(service, group, true);
                Map<String, String> metadata = picked.getMetadata() == null ? Map.of() : picked.getMetadata();
                line = picked.getIp() + ":" + picked.getPort() + " " + metadata.getOrDefault(TRACK, "-") + " "
                        + metadata.getOrDefault(REVISION, "-");
                emit(out, line, "pick");
            } catch (Exception noInstance) {
                String reason = String.valueOf(noInstance.getMessage()).replaceAll("\\s+", " ");
                emit(out, noInstance.getClass().getSimpleName() + ": " + reason, "none");
            }
            LockSupport.parkNanos(intervalNanos);
        }
        naming.shutDown();
    }

    private static void emit(PrintWriter out, String text, String kind) {
        synchronized (out) {
            out.print(System.currentTimeMillis());
            out.print(' ');
            out.print(kind);
            if (!text.isEmpty()) {
                out.print(' ');
                out.print(text);
            }
            out.print('\n');
            out.flush();
        }
    }

    static Map<String, String> parse(String[] args) {
        Map<String, String> options = new HashMap<>();
        for (int i = 0; i + 1 < args.length; i += 2) {
            if (!args[i].startsWith("--")) {
                throw new IllegalArgumentException("expected --option value pairs, got " + args[i]);
            }
            options.put(args[i].substring(2), args[i + 1]);
        }
        return options;
    }

    static String required(Map<String, String> options, String name) {
        String value = options.get(name);
        if (value == null || value.isEmpty()) {
            throw new IllegalArgumentException("--" + name + " is required");
        }
        return value;
    }
}
