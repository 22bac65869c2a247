using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static Lutra.Core.Quants.QuantMath;

namespace Lutra.Core.Quants;

/// <summary>
/// TQ1_0 (54 B / 256 elements, 1.69 bits): ternary values (t − 1)·d, t ∈ {0,1,2}, packed five trits per byte
/// in base 3 as a fixed-point fraction (byte = ⌈v·256/243⌉), so trit n comes out as ((byte·3ⁿ) mod 256)·3 >> 8.
/// <c>Qs[0..32)</c> hold elements m + 32n (n &lt; 5), <c>Qs[32..48)</c> elements 160 + m + 16n,
/// <c>Qh[0..4)</c> four trits each for elements 240 + j + 4n (n &lt; 4).
/// </summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
public unsafe struct BlockTQ1_0
{
    public const int Size = 256;
    public fixed byte Qs[48];
    public fixed byte Qh[4];
    public Half D;
}

public static unsafe class TQ1_0Reference
{
    public static readonly ReferenceKernels Kernels = new(Dequantize, Quantize, GgmlType.Q8_K, Dot);

    private static readonly byte[] Pow3 = [1, 3, 9, 27, 81];

    /// <summary>Trit n (0 = most significant) of a packed byte.</summary>
    private static int Trit(byte packed, int n) => ((byte)(packed * Pow3[n]) * 3) >> 8;

    /// <summary>
    /// <see cref="Trit"/> of every byte q at [5·q + n]: unpacking reads each trit instead of computing it (the
    /// load-time conversion of a 1B model to TQ2_0 tiles took 1.51 s with the multiplies, 1.09 s with the table).
    /// </summary>
    private static readonly byte[] Trits = [.. Enumerable.Range(0, 256 * 5).Select(i => (byte)Trit((byte)(i / 5), i % 5))];

    /// <summary>The 256 trits t ∈ {0,1,2} of one block, in element order.</summary>
    internal static void Unpack(in BlockTQ1_0 b, Span<int> t)
    {
        var trits = stackalloc byte[BlockTQ1_0.Size];
        fixed (BlockTQ1_0* block = &b)
            Unpack((byte*)block, trits);
        for (var e = 0; e < BlockTQ1_0.Size; e++)
            t[e] = trits[e];
    }

    /// <summary>The 256 trits t ∈ {0,1,2} of the block at <paramref name="block"/>, in element order, as bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Unpack(byte* block, byte* trits)
    {
        fixed (byte* table = Trits)
        {
            for (var m = 0; m < 32; m++)
            {
                var t = table + 5 * block[m];
                for (var n = 0; n < 5; n++)
                    trits[32 * n + m] = t[n];
            }
            for (var m = 0; m < 16; m++)
            {
                var t = table + 5 * block[32 + m];
                for (var n = 0; n < 5; n++)
                    trits[160 + 16 * n + m] = t[n];
            }
            for (var j = 0; j < 4; j++)
            {
                var t = table + 5 * block[48 + j];
                for (var n = 0; n < 4; n++)
                    trits[240 + 4 * n + j] = t[n];
            }
        }
    }

    public static void Dequantize(ReadOnlySpan<byte> src, Span<float> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockTQ1_0>(src);
        Span<int> t = stackalloc int[BlockTQ1_0.Size];
        for (var i = 0; i < dst.Length / BlockTQ1_0.Size; i++)
        {
            Unpack(blocks[i], t);
            var d = ToFloat(blocks[i].D);
            var y = dst.Slice(i * BlockTQ1_0.Size, BlockTQ1_0.Size);
            for (var j = 0; j < BlockTQ1_0.Size; j++)
                y[j] = (t[j] - 1) * d;
        }
    }

    /// <summary>quantize_row_tq1_0_ref: d = amax of the 256 elements, t = lroundf(x/d) + 1 (halves away from zero).</summary>
    public static void Quantize(ReadOnlySpan<float> src, Span<byte> dst)
    {
        var blocks = MemoryMarshal.Cast<byte, BlockTQ1_0>(dst);
        for (var i = 0; i < src.Length / BlockTQ1_0.Size; i++)
        {
            var x = src.Slice(i * BlockTQ1_0.Size, BlockTQ1_0.Size);
            ref var b = ref blocks[i];
            var d = AbsMax(x);
            var id = d != 0 ? 1.0f / d : 0.0f;
            b.D = ToHalf(d);
            for (var m = 0; m < 32; m++)
                b.Qs[m] = Pack(x, m, 32, 5, id);
            for (var m = 0; m < 16; m++)
                b.Qs[32 + m] = Pack(x, 160 + m, 16, 5, id);
            for (var j = 0; j < 4; j++)
                b.Qh[j] = Pack(x, 240 + j, 4, 4, id);
        }
    }

    /// <summary>
    /// Base-3 value of <paramref name="count"/> trits x[first + stride·n] (first = most significant), padded to five
    /// trits, then mapped to a byte by the ceiling ⌈v·256/243⌉ that makes multiplication-based decoding work.
    /// </summary>
    private static byte Pack(ReadOnlySpan<float> x, int first, int stride, int count, float id)
    {
        var v = 0;
        for (var n = 0; n < count; n++)
            v = v * 3 + RoundAway(x[first + stride * n] * id) + 1;
        for (var n = count; n < 5; n++)
            v *= 3;
        return (byte)((v * 256 + 242) / 243);
    }

    /// <summary>Σ_blocks (Σ (t − 1)·a) · (d_w · d_a).</summary>
    public static float Dot(ReadOnlySpan<byte> weights, ReadOnlySpan<byte> activations, int n)
    {
        var w = MemoryMarshal.Cast<byte, BlockTQ1_0>(weights);
        var a = MemoryMarshal.Cast<byte, BlockQ8_K>(activations);
        Span<int> t = stackalloc int[BlockTQ1_0.Size];
        var sum = 0f;
        for (var i = 0; i < n / BlockTQ1_0.Size; i++)
        {
            Unpack(w[i], t);
            ref readonly var ab = ref a[i];
            var sumi = 0;
            for (var j = 0; j < BlockTQ1_0.Size; j++)
                sumi += (t[j] - 1) * ab.Qs[j];
            sum += sumi * (ToFloat(w[i].D) * ab.D);
        }
        return sum;
    }
}
