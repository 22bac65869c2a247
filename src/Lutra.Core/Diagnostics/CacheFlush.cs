using System.Globalization;
using System.Runtime.Intrinsics;
using Lutra.Core.Tensors;
using Lutra.Core.Threading;

namespace Lutra.Core.Diagnostics;

/// <summary>
/// Pushes recently touched data out of the CPU caches by reading a buffer twice the size of the last-level
/// cache, split over a pool. A kernel timed on one matrix right after this reads its weights from memory, as
/// decode does (a whole model never fits in cache), instead of from an L3 warmed by the previous repetition.
/// </summary>
public sealed unsafe class CacheFlush : IComputeWork, IDisposable
{
    private const long FallbackLastLevelCache = 32L << 20;
    private NativeBuffer? _memory;
    private byte* _buffer;
    private long _sink;

    public CacheFlush(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1L << 20);
        Length = bytes & ~255L;
        // One byte written per 4 KiB page so every page is a real one (untouched pages all map the same zero page and
        // evict nothing), on huge pages where the OS grants them. Measured for 256 MiB on an Intel host whose 260 MB L3
        // asks for that much: a full fill 183-196 ms, a write per 4 KiB page 100-185 ms, on huge pages 47-56 ms once
        // the process holds some (the tuner's repacked candidates come first) but 0.5-1.1 s for its first ones.
        _memory = NativeBuffer.ForStreaming(Length);
        _buffer = _memory.Pointer;
        for (long i = 0; i < Length; i += 4096)
            _buffer[i] = 1;
    }

    public long Length { get; }

    /// <summary>Twice the largest cache the OS reports (Linux sysfs), else twice 32 MiB; at most 256 MiB.</summary>
    public static long DefaultBytes() => Math.Min(2 * (LastLevelCacheBytes() ?? FallbackLastLevelCache), 256L << 20);

    /// <summary>Reads the whole buffer on every thread of <paramref name="pool"/>.</summary>
    public void Run(ComputePool pool)
    {
        ObjectDisposedException.ThrowIf(_buffer == null, this);
        pool.Run(this);
    }

    public void Execute(int threadIndex, int threadCount)
    {
        var lines = (int)(Length / 256);
        var (start, end) = ComputePool.Partition(lines, threadIndex, threadCount);
        var acc = Vector256<long>.Zero;
        var p = (long*)(_buffer + (long)start * 256);
        for (var i = start; i < end; i++, p += 32)
            acc += Vector256.Load(p) + Vector256.Load(p + 8) + Vector256.Load(p + 16) + Vector256.Load(p + 24);
        Interlocked.Add(ref _sink, Vector256.Sum(acc));
    }

    private static long? LastLevelCacheBytes()
    {
        const string root = "/sys/devices/system/cpu/cpu0/cache";
        try
        {
            if (!Directory.Exists(root))
                return null;
            long? largest = null;
            foreach (var index in Directory.EnumerateDirectories(root, "index*"))
            {
                var sizeFile = Path.Combine(index, "size");
                if (File.Exists(sizeFile) && ParseSize(File.ReadAllText(sizeFile).Trim()) is long size)
                    largest = Math.Max(largest ?? 0, size);
            }
            return largest;
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    // sysfs writes sizes as "32768K" or "32M".
    private static long? ParseSize(string text)
    {
        if (text.Length < 2)
            return null;
        var unit = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 0 };
        var digits = unit == 0 ? text : text[..^1];
        return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 ? n * Math.Max(unit, 1) : null;
    }

    public void Dispose()
    {
        if (_buffer == null)
            return;
        _memory?.Dispose();
        _memory = null;
        _buffer = null;
        GC.KeepAlive(_sink);
    }
}
