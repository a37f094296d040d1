// Generates `concurrency_limits_trajectories.txt`, the limits Netflix concurrency-limits
// computes for scripted sample sequences; `tests/reference.rs` replays them through
// palisade's algorithms and expects the same limit after every sample.
//
// Regenerate (concurrency-limits' core sources, with slf4j stubbed or on the classpath):
//   javac -d out $(find concurrency-limits-core/src/main/java -name '*.java')
//   javac -cp out -d drv Trajectories.java
//   java -cp out:drv Trajectories > concurrency_limits_trajectories.txt
// The data file was made from concurrency-limits commit 78a74b9878d38c4c048b0304ce12a162ab7b7222.
import com.netflix.concurrency.limits.Limit;
import com.netflix.concurrency.limits.limit.*;
import java.util.concurrent.TimeUnit;

/** Prints sample sequences and the limit concurrency-limits computes after each one. */
public class Trajectories {
    static long state;
    static long next() { state = state * 6364136223846793005L + 1442695040888963407L; return state >>> 33; }
    static double unit() { return next() / (double) (1L << 31); }

    static void run(String name, String config, Limit limit, long seed, int n, boolean drops) {
        state = seed;
        System.out.println("# " + name);
        System.out.println("config " + config);
        long base = 10_000_000L; // 10 ms
        for (int i = 0; i < n; i++) {
            int phase = (i / 25) % 4;
            double factor;
            switch (phase) {
                case 0: factor = 1.0 + unit() * 0.1; break;        // steady
                case 1: factor = 1.0 + (i % 25) * 0.12; break;      // latency rising
                case 2: factor = 1.0 + unit() * 3.0; break;         // noisy
                default: factor = 0.9 + unit() * 0.3; break;        // back to normal
            }
            long rtt = Math.max(1, (long) (base * factor));
            int current = limit.getLimit();
            int inflight = (int) Math.max(1, Math.round(current * (0.3 + unit())));
            boolean drop = drops && unit() < 0.08;
            if (drop && unit() < 0.5) rtt = Math.max(1, rtt / 10); // fast failures
            limit.onSample(0, rtt, inflight, drop);
            System.out.println(rtt + " " + inflight + " " + (drop ? 1 : 0) + " " + limit.getLimit());
        }
    }

    public static void main(String[] a) {
        run("vegas default", "vegas probe_multiplier=1000",
            VegasLimit.newBuilder().probeMultiplier(1000).build(), 1, 200, true);
        run("vegas large", "vegas initial=10000 max=20000 probe_multiplier=1000",
            VegasLimit.newBuilder().initialLimit(10000).maxConcurrency(20000).probeMultiplier(1000).build(), 2, 200, true);
        run("vegas smoothing 0.5 alpha 3 beta 6", "vegas initial=100 max=200 smoothing=0.5 alpha=3 beta=6 probe_multiplier=1000",
            VegasLimit.newBuilder().initialLimit(100).maxConcurrency(200).smoothing(0.5).alpha(3).beta(6).probeMultiplier(1000).build(), 3, 200, true);
        run("vegas halving decrease", "vegas initial=100 max=200 decrease=half probe_multiplier=1000",
            VegasLimit.newBuilder().initialLimit(100).maxConcurrency(200).decreaseFunction(l -> l / 2).probeMultiplier(1000).build(), 4, 200, true);
        run("gradient2 default", "gradient2",
            Gradient2Limit.newBuilder().build(), 5, 300, false);
        run("gradient2 wide", "gradient2 initial=50 min=5 max=500 long_window=100",
            Gradient2Limit.newBuilder().initialLimit(50).minLimit(5).maxConcurrency(500).longWindow(100).build(), 6, 300, false);
        run("gradient2 tolerance 1.0 smoothing 0.5", "gradient2 initial=50 min=5 max=500 rtt_tolerance=1.0 smoothing=0.5 queue_size=2",
            Gradient2Limit.newBuilder().initialLimit(50).minLimit(5).maxConcurrency(500).rttTolerance(1.0).smoothing(0.5).queueSize(2).build(), 7, 300, false);
        run("gradient2 drops as samples", "gradient2 initial=50 min=5 max=500 drops_as_samples",
            Gradient2Limit.newBuilder().initialLimit(50).minLimit(5).maxConcurrency(500).build(), 8, 300, true);
        run("aimd default", "aimd",
            AIMDLimit.newBuilder().build(), 9, 300, true);
        run("aimd wide", "aimd initial=10 min=1 max=50 backoff=0.5 timeout_ms=25",
            AIMDLimit.newBuilder().initialLimit(10).minLimit(1).maxLimit(50).backoffRatio(0.5).timeout(25, TimeUnit.MILLISECONDS).build(), 10, 300, true);
    }
}
