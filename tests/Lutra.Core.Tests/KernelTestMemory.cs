using System.Runtime.InteropServices;

namespace Lutra.Core.Tests;

/// <summary>
/// 64-byte aligned unmanaged bytes for kernels that take pointers, filled with a marker so that writes past a
/// kernel's output and reads of uninitialised state show up.
/// </summary>
internal sealed unsafe class Native : IDisposable
{
    public Native(long bytes, byte fill = 0xCD)
    {
        Length = bytes;
        Pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 64), 64);
        new Span<byte>(Pointer, (int)Math.Max(bytes, 64)).Fill(fill);
    }

    public long Length { get; }
    public byte* Pointer { get; }
    public Span<byte> Span => new(Pointer, (int)Length);
    public void Dispose() => NativeMemory.AlignedFree(Pointer);
}

/// <summary>Random inputs shared by the kernel tests.</summary>
internal static class TestVectors
{
    /// <summary><paramref name="n"/> values uniform in [−<paramref name="scale"/>, <paramref name="scale"/>).</summary>
    public static float[] RandomRow(Random rng, int n, double scale)
    {
        var x = new float[n];
        for (var i = 0; i < n; i++)
            x[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return x;
    }
}
