using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Lutra.Core.Tensors;
using Lutra.Core.Threading;

namespace Lutra.Core.Diagnostics;

/// <summary>
/// Measures sustained memory read bandwidth the way decode reads weights: streaming through a buffer far
/// larger than the caches, split over the pool's threads. `bench` runs it right before its rows so every
/// achieved-GB/s figure is compared with a ceiling measured on the same machine, at the same moment.
/// </summary>
public static unsafe class BandwidthProbe
{
    /// <summary>Best read bandwidth in GB/s (10^9 bytes/s) over <paramref name="repetitions"/> passes.</summary>
    public static double MeasureReadGBps(ComputePool pool, long bufferBytes = 512L << 20, int repetitions = 5)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferBytes, 1L << 20);
        bufferBytes &= ~255L;
        // The memory repacked weights live in (huge pages where the OS gives them): the ceiling is the best the
        // machine reads, so no kernel can beat it by running on better pages than the probe.
        using var memory = NativeBuffer.ForStreaming(bufferBytes);
        var buffer = memory.Pointer;
        // Touch every page so the measurement sees resident memory, not page faults.
        new Span<byte>(buffer, (int)Math.Min(bufferBytes, int.MaxValue)).Fill(1);
        for (long o = int.MaxValue; o < bufferBytes; o += 4096)
            buffer[o] = 1;
        var work = new ReadWork(buffer, bufferBytes);
        pool.Run(work); // warm-up
        var best = double.MaxValue;
        for (var r = 0; r < repetitions; r++)
        {
            var sw = Stopwatch.StartNew();
            pool.Run(work);
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        GC.KeepAlive(work.Sink);
        return bufferBytes / best / 1e9;
    }

    private sealed class ReadWork(byte* buffer, long bytes) : IComputeWork
    {
        public long Sink;

        public void Execute(int threadIndex, int threadCount)
        {
            var lines = (int)(bytes / 256);
            var (start, end) = ComputePool.Partition(lines, threadIndex, threadCount);
            var acc0 = Vector256<long>.Zero;
            var acc1 = Vector256<long>.Zero;
            var p = (long*)(buffer + (long)start * 256);
            for (var i = start; i < end; i++, p += 32)
            {
                // 256 bytes per iteration in eight independent loads; adds keep the loads from being elided.
                acc0 += Vector256.Load(p) + Vector256.Load(p + 4) + Vector256.Load(p + 8) + Vector256.Load(p + 12);
                acc1 += Vector256.Load(p + 16) + Vector256.Load(p + 20) + Vector256.Load(p + 24) + Vector256.Load(p + 28);
            }
            Interlocked.Add(ref Sink, Vector256.Sum(acc0 + acc1));
        }
    }
}
