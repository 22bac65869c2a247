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
public sealed unsafe class BandwidthProbe : IDisposable
{
    private readonly NativeBuffer _memory;
    private readonly ReadWork _work;

    /// <summary>Allocates and touches a <paramref name="bufferBytes"/> buffer to stream through (kept until disposed).</summary>
    public BandwidthProbe(long bufferBytes = 512L << 20)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferBytes, 1L << 20);
        bufferBytes &= ~255L;
        // The memory repacked weights live in (huge pages where the OS gives them): the ceiling is the best the
        // machine reads, so no kernel can beat it by running on better pages than the probe.
        _memory = NativeBuffer.ForStreaming(bufferBytes);
        var buffer = _memory.Pointer;
        // Touch every page so the measurement sees resident memory, not page faults.
        new Span<byte>(buffer, (int)Math.Min(bufferBytes, int.MaxValue)).Fill(1);
        for (long o = int.MaxValue; o < bufferBytes; o += 4096)
            buffer[o] = 1;
        _work = new ReadWork(buffer, bufferBytes);
    }

    /// <summary>Best read bandwidth in GB/s (10^9 bytes/s) over <paramref name="repetitions"/> passes after one untimed pass.</summary>
    public double MeasureGBps(ComputePool pool, int repetitions = 5)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        pool.Run(_work); // warm-up
        var best = double.MaxValue;
        for (var r = 0; r < repetitions; r++)
        {
            var sw = Stopwatch.StartNew();
            pool.Run(_work);
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        GC.KeepAlive(_work.Sink);
        return _work.Bytes / best / 1e9;
    }

    /// <summary>Best read bandwidth in GB/s over <paramref name="repetitions"/> passes through a new buffer.</summary>
    public static double MeasureReadGBps(ComputePool pool, long bufferBytes = 512L << 20, int repetitions = 5)
    {
        using var probe = new BandwidthProbe(bufferBytes);
        return probe.MeasureGBps(pool, repetitions);
    }

    public void Dispose() => _memory.Dispose();

    private sealed class ReadWork(byte* buffer, long bytes) : IComputeWork
    {
        public long Sink;

        public long Bytes => bytes;

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
