using System.Runtime.InteropServices;
using Lutra.Core.Kernels;
using Lutra.Core.Quants;

namespace Lutra.Core.Tests;

/// <summary>
/// Q3_K and Q6_K store unsigned codes with a constant offset (value = code − 4, code − 32). A row whose codes all
/// equal the offset is all zeros, and the reference's integer dot is exactly 0 whatever the scales and
/// activations; the fast kernels must give exactly 0 too, not large partial sums that cancel only after rounding.
/// </summary>
public unsafe class KQuantOffsetTests
{
    public static TheoryData<GgmlType, InstructionSet> TypesAndIsas()
    {
        var data = new TheoryData<GgmlType, InstructionSet>();
        foreach (var type in new[] { GgmlType.Q3_K, GgmlType.Q6_K })
            foreach (var isa in KernelIsa.Supported)
                if (isa != InstructionSet.Scalar)
                    data.Add(type, isa);
        return data;
    }

    [Theory]
    [MemberData(nameof(TypesAndIsas))]
    public void Rows_of_codes_equal_to_the_offset_give_exactly_zero(GgmlType type, InstructionSet isa)
    {
        const int n = 4096;
        const int rows = 3;
        var kernel = KernelTable.Get(type, isa);
        var info = QuantTypes.Get(type);
        var rowBytes = (int)info.RowBytes(n);
        var rng = new Random(17);
        var weights = new byte[rowBytes * rows];
        for (var b = 0; b < weights.Length / info.BlockBytes; b++)
        {
            var block = weights.AsSpan(b * info.BlockBytes, info.BlockBytes);
            rng.NextBytes(block);
            if (type == GgmlType.Q3_K)
            {
                // Code 4 everywhere: every high-mask bit set, every low two-bit field 0; random 6-bit scales.
                block[..32].Fill(0xFF);
                block[32..96].Clear();
                MemoryMarshal.Write(block[108..], (Half)0.5);
            }
            else
            {
                // Code 32 everywhere: low nibbles 0, every two-bit high field 2; random int8 scales.
                block[..128].Clear();
                block[128..192].Fill(0xAA);
                MemoryMarshal.Write(block[208..], (Half)0.5);
            }
        }
        var x = new float[n];
        for (var i = 0; i < n; i++)
            x[i] = (float)(rng.NextDouble() * 2 - 1);

        var state = (byte*)NativeMemory.AlignedAlloc((nuint)kernel.ActivationBytes(n), 64);
        try
        {
            var y = new float[rows];
            fixed (float* px = x)
            fixed (byte* pw = weights)
            fixed (float* py = y)
            {
                kernel.PrepareActivations(px, n, state);
                kernel.MatVec(pw, rowBytes, rows, state, n, py);
            }
            var activations = new ReadOnlySpan<byte>(state, kernel.StandardActivationBytes(n));
            for (var r = 0; r < rows; r++)
            {
                Assert.Equal(0f, QuantReference.Dot(type, weights.AsSpan(r * rowBytes, rowBytes), activations, n));
                Assert.Equal(0f, y[r]);
            }
        }
        finally
        {
            NativeMemory.AlignedFree(state);
        }
    }
}
