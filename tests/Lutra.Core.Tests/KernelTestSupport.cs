using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

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

    /// <summary>
    /// <paramref name="rows"/> rows of a K-quant with d and dmin (Q2_K, Q4_K): quantized by the reference quantizer,
    /// or raw random bytes whose two f16 scales at <paramref name="scaleOffset"/> in each block are finite and
    /// cycle through zero, subnormal, negative and small values.
    /// </summary>
    public static byte[] KQuantWeights(Random rng, GgmlType type, int n, int rows, bool raw, int scaleOffset)
    {
        var info = QuantTypes.Get(type);
        var blockBytes = (int)info.BlockBytes;
        var rowBytes = (int)info.RowBytes(n);
        var bytes = new byte[rowBytes * rows];
        if (!raw)
        {
            for (var r = 0; r < rows; r++)
                QuantReference.Quantize(type, RandomRow(rng, n, 0.5 + r % 3), bytes.AsSpan(r * rowBytes, rowBytes));
            return bytes;
        }
        rng.NextBytes(bytes);
        for (var block = 0; block < bytes.Length / blockBytes; block++)
        {
            for (var half = 0; half < 2; half++)
            {
                var scale = ((block + half) % 5) switch
                {
                    0 => (Half)0,
                    1 => BitConverter.UInt16BitsToHalf((ushort)rng.Next(1, 0x400)), // subnormal
                    2 => (Half)(-(rng.NextDouble() * 100)),
                    _ => (Half)((rng.NextDouble() - 0.5) * 0.02),
                };
                MemoryMarshal.Write(bytes.AsSpan(block * blockBytes + scaleOffset + 2 * half), scale);
            }
        }
        return bytes;
    }
}

/// <summary>Checks shared by the tests of the repacking kernels over K-quant and ternary weights (Q8_K activations).</summary>
internal static unsafe class RepackedKernelChecks
{
    /// <summary>
    /// Prepares <paramref name="x"/> into <paramref name="state"/> (its first bytes must be the reference Q8_K row),
    /// multiplies the repacked <paramref name="packed"/> in MatVec calls ending at <paramref name="splits"/>, and
    /// asserts every row equal to <see cref="QuantReference.Dot"/> over the GGUF <paramref name="weights"/> bit for
    /// bit, and nothing written past the last row. The packed rows are <see cref="MatVecKernel.RepackedRowBytes"/> apart.
    /// </summary>
    public static void MatVecEqualsReference(MatVecKernel kernel, GgmlType type, byte[] weights, Native packed, Native state,
        int rows, int n, float[] x, int[] splits, string label)
    {
        var rowBytes = weights.Length / rows;
        var stride = kernel.RepackedRowBytes(rowBytes, n);
        fixed (float* px = x)
            kernel.PrepareActivations(px, n, state.Pointer);
        var standard = new byte[kernel.StandardActivationBytes(n)];
        QuantReference.QuantizeActivations(GgmlType.Q8_K, x, standard);
        Assert.True(standard.AsSpan().SequenceEqual(state.Span[..standard.Length]), "the prepared state must begin with the reference activation row");
        var y = new float[rows + 1];
        y[rows] = float.NaN;
        fixed (float* py = y)
        {
            var start = 0;
            foreach (var end in splits.Append(rows))
            {
                kernel.MatVec(packed.Pointer + start * stride, stride, end - start, state.Pointer, n, py + start);
                start = end;
            }
        }
        for (var r = 0; r < rows; r++)
        {
            var expected = QuantReference.Dot(type, weights.AsSpan(r * rowBytes, rowBytes), standard, n);
            Assert.True(expected.Equals(y[r]), $"{label} n={n} rows={rows} row {r}: reference {expected}, kernel {y[r]}");
        }
        Assert.True(float.IsNaN(y[rows]), "MatVec wrote past its rows");
    }
}
