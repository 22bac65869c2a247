using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests;

/// <summary>
/// The fast kernels against the scalar reference on inputs random rows rarely produce: every code value (raw
/// random block bytes), saturated activations (all ±127), all-zero blocks, long rows, odd block counts and row
/// counts off the 4-row tile.
/// </summary>
public unsafe class KernelEdgeCaseTests
{
    private static readonly GgmlType[] WeightTypes =
    [
        GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q4_0, GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.Q8_0,
        GgmlType.Q2_K, GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.IQ4_NL, GgmlType.IQ4_XS,
        GgmlType.TQ1_0, GgmlType.TQ2_0,
    ];

    public static TheoryData<GgmlType, InstructionSet> TypesAndIsas()
    {
        var data = new TheoryData<GgmlType, InstructionSet>();
        foreach (var type in WeightTypes)
            foreach (var isa in KernelIsa.Supported)
                if (isa != InstructionSet.Scalar)
                    data.Add(type, isa);
        return data;
    }

    /// <summary>Byte offsets of the f16 scale fields in one block (all other bytes are codes or packed scales).</summary>
    private static int[] HalfFields(GgmlType type) => type switch
    {
        GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0 or GgmlType.IQ4_NL or GgmlType.IQ4_XS => [0],
        GgmlType.Q4_1 or GgmlType.Q5_1 or GgmlType.Q4_K or GgmlType.Q5_K => [0, 2],
        GgmlType.Q2_K => [80, 82],
        GgmlType.Q3_K => [108],
        GgmlType.Q6_K => [208],
        GgmlType.TQ1_0 => [52],
        GgmlType.TQ2_0 => [64],
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    private static bool IsFloat(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

    /// <summary>Rows of raw block bytes from <paramref name="fill"/>, with every f16 scale set to a finite value in ±0.5.</summary>
    private static byte[] RawRows(GgmlType type, int n, int rows, Random rng, Func<int, byte> fill)
    {
        var info = QuantTypes.Get(type);
        var rowBytes = (int)info.RowBytes(n);
        var bytes = new byte[rowBytes * rows];
        if (IsFloat(type))
        {
            var x = new float[n];
            for (var r = 0; r < rows; r++)
            {
                for (var i = 0; i < n; i++)
                    x[i] = (float)(rng.NextDouble() - 0.5);
                QuantReference.Quantize(type, x, bytes.AsSpan(r * rowBytes, rowBytes));
            }
            return bytes;
        }
        for (var i = 0; i < bytes.Length; i++)
            bytes[i] = fill(i);
        for (var block = 0; block < bytes.Length / info.BlockBytes; block++)
            foreach (var field in HalfFields(type))
                MemoryMarshal.Write(bytes.AsSpan(block * info.BlockBytes + field), (Half)(rng.NextDouble() - 0.5));
        return bytes;
    }

    private static void AssertMatchesReference(GgmlType type, InstructionSet isa, byte[] weights, float[] x, int rows)
    {
        var n = x.Length;
        var kernel = KernelTable.Get(type, isa);
        var rowBytes = (int)QuantTypes.Get(type).RowBytes(n);
        var expectedActivations = new byte[kernel.StandardActivationBytes(n)];
        QuantReference.QuantizeActivations(kernel.ActivationType, x, expectedActivations);
        var statePointer = (byte*)NativeMemory.AlignedAlloc((nuint)kernel.ActivationBytes(n), 64);
        try
        {
            var y = new float[rows];
            fixed (float* px = x)
            fixed (byte* pw = weights)
            fixed (float* py = y)
            {
                kernel.PrepareActivations(px, n, statePointer);
                kernel.MatVec(pw, rowBytes, rows, statePointer, n, py);
            }
            var activations = new ReadOnlySpan<byte>(statePointer, expectedActivations.Length).ToArray();
            Assert.Equal(expectedActivations, activations);
            var wf = new float[n];
            var af = new float[n];
            QuantReference.Dequantize(kernel.ActivationType, activations, af);
            for (var r = 0; r < rows; r++)
            {
                var row = weights.AsSpan(r * rowBytes, rowBytes);
                var expected = QuantReference.Dot(type, row, activations, n);
                QuantReference.Dequantize(type, row, wf);
                var magnitude = 0.0;
                for (var i = 0; i < n; i++)
                    magnitude += Math.Abs((double)wf[i] * af[i]);
                Assert.True(Math.Abs(expected - y[r]) <= 1e-5 * magnitude + 1e-6,
                    $"{kernel} n={n} row {r}/{rows}: reference {expected}, kernel {y[r]}, sum |w*a| {magnitude}");
            }
        }
        finally
        {
            NativeMemory.AlignedFree(statePointer);
        }
    }

    private static int Elements(GgmlType type, int blocks) => blocks * Math.Max(32, QuantTypes.Get(type).BlockSize);

    [Theory]
    [MemberData(nameof(TypesAndIsas))]
    public void Every_code_value_against_saturated_activations(GgmlType type, InstructionSet isa)
    {
        var rng = new Random(7);
        var n = Elements(type, 8);
        // All ±127 after quantization: every element has the block's largest magnitude.
        var x = new float[n];
        for (var i = 0; i < n; i++)
            x[i] = rng.Next(2) == 0 ? 3f : -3f;
        const int rows = 6;
        AssertMatchesReference(type, isa, RawRows(type, n, rows, rng, _ => (byte)rng.Next(256)), x, rows);
        foreach (var pattern in new byte[] { 0xFF, 0x80, 0x7F, 0x00 })
        {
            Array.Fill(x, 3f);
            AssertMatchesReference(type, isa, RawRows(type, n, rows, rng, _ => pattern), x, rows);
            Array.Fill(x, -3f);
            AssertMatchesReference(type, isa, RawRows(type, n, rows, rng, _ => pattern), x, rows);
        }
    }

    [Theory]
    [MemberData(nameof(TypesAndIsas))]
    public void Long_rows_and_zero_blocks(GgmlType type, InstructionSet isa)
    {
        var rng = new Random(11);
        const int n = 14336;
        const int rows = 5;
        var x = new float[n];
        for (var i = 0; i < n; i++)
            x[i] = i / 256 % 3 == 1 ? 0f : (float)(rng.NextDouble() * 4 - 2); // every third super-block all zero
        var weights = RawRows(type, n, rows, rng, i => i / 512 % 4 == 2 ? (byte)0 : (byte)rng.Next(256));
        AssertMatchesReference(type, isa, weights, x, rows);
        AssertMatchesReference(type, isa, weights, new float[n], rows);
    }

    [Theory]
    [MemberData(nameof(TypesAndIsas))]
    public void Block_and_row_counts_off_the_tiles(GgmlType type, InstructionSet isa)
    {
        var rng = new Random(13);
        foreach (var blocks in new[] { 1, 3, 5 })
        {
            var n = Elements(type, blocks);
            var x = new float[n];
            for (var i = 0; i < n; i++)
                x[i] = (float)(rng.NextDouble() * 2 - 1);
            foreach (var rows in new[] { 1, 2, 3, 5, 7 })
                AssertMatchesReference(type, isa, RawRows(type, n, rows, rng, _ => (byte)rng.Next(256)), x, rows);
        }
    }

    [Fact]
    public void Every_weight_type_has_a_fast_kernel_at_every_supported_instruction_set()
    {
        foreach (var type in WeightTypes)
            foreach (var isa in KernelIsa.Supported)
                if (isa != InstructionSet.Scalar)
                    Assert.False(KernelTable.Get(type, isa) is ReferenceMatVec, $"{type} at {isa} falls back to the scalar reference");
    }
}
