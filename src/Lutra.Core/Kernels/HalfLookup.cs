using System.Runtime.CompilerServices;

namespace Lutra.Core.Kernels;

/// <summary>
/// Every f16 bit pattern's f32 value (256 KiB, pinned). .NET converts <see cref="Half"/> in software, which
/// costs more than the integer work of a whole Q8_0 block; kernels read block scales through this table
/// instead, as ggml's scalar code does (ggml_table_f32_f16). The conversion is exact either way.
/// </summary>
internal static unsafe class HalfLookup
{
    private static readonly float[] Values = Build();
    private static readonly float* Table = (float*)Unsafe.AsPointer(ref Values[0]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float ToSingle(byte* halfBits) => Table[*(ushort*)halfBits];

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float[] Build()
    {
        var table = GC.AllocateUninitializedArray<float>(65536, pinned: true);
        for (var i = 0; i < table.Length; i++)
            table[i] = (float)BitConverter.UInt16BitsToHalf((ushort)i);
        return table;
    }
}
