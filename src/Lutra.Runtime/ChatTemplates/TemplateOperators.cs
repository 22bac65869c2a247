using System.Text;

namespace Lutra.Runtime.ChatTemplates;

/// <summary>Python's arithmetic and comparison operators over template values; undefined operands raise.</summary>
internal static class TemplateOperators
{
    public static object? Unary(string op, object? operand)
    {
        if (operand is Undefined u)
            throw new TemplateRuntimeException(u.Message);
        return (op, operand) switch
        {
            ("-", long l) => checked(-l),
            ("-", bool b) => b ? -1L : 0L,
            ("-", double d) => -d,
            ("+", long or double) => operand,
            ("+", bool b) => b ? 1L : 0L,
            _ => throw new TemplateRuntimeException($"bad operand type for unary {op}: '{PyValue.TypeName(operand)}'"),
        };
    }

    public static object? Binary(string op, object? left, object? right)
    {
        if (left is Undefined ul)
            throw new TemplateRuntimeException(ul.Message);
        if (right is Undefined ur)
            throw new TemplateRuntimeException(ur.Message);
        try
        {
            if (PyValue.IsNumber(left) && PyValue.IsNumber(right))
                return Arithmetic(op, left, right);
            return (op, left, right) switch
            {
                ("+", string a, string b) => CheckedLength(a.Length + (long)b.Length) ? a + b : null,
                ("+", TemplateList a, TemplateList b) when a.IsTuple == b.IsTuple => new TemplateList(a.Concat(b)) { IsTuple = a.IsTuple },
                ("*", string a, long or bool) => Repeat(a, PyValue.ToLong(right)),
                ("*", long or bool, string b) => Repeat(b, PyValue.ToLong(left)),
                ("*", TemplateList a, long or bool) => RepeatList(a, PyValue.ToLong(right)),
                ("+", string, _) => throw new TemplateRuntimeException($"can only concatenate str (not \"{PyValue.TypeName(right)}\") to str"),
                ("+", TemplateList, _) => throw new TemplateRuntimeException($"can only concatenate list (not \"{PyValue.TypeName(right)}\") to list"),
                _ => throw new TemplateRuntimeException(
                    $"unsupported operand type(s) for {op}: '{PyValue.TypeName(left)}' and '{PyValue.TypeName(right)}'"),
            };
        }
        catch (OverflowException)
        {
            throw new TemplateRuntimeException($"integer overflow in '{op}'");
        }
    }

    private static bool CheckedLength(long length) =>
        length <= TemplateInterpreter.MaxStringLength ? true : throw new TemplateRuntimeException("string result is too large");

    private static string Repeat(string s, long count)
    {
        if (count <= 0 || s.Length == 0)
            return "";
        CheckedLength(s.Length * count);
        var sb = new StringBuilder(checked((int)(s.Length * count)));
        for (var i = 0; i < count; i++)
            sb.Append(s);
        return sb.ToString();
    }

    private static TemplateList RepeatList(TemplateList list, long count)
    {
        var result = new TemplateList { IsTuple = list.IsTuple };
        if (count <= 0 || list.Count == 0)
            return result;
        CheckedLength(list.Count * count);
        for (var i = 0; i < count; i++)
            result.AddRange(list);
        return result;
    }

    private static object Arithmetic(string op, object? left, object? right)
    {
        if (op == "/")
        {
            var divisor = PyValue.ToDouble(right);
            if (divisor == 0)
                throw new TemplateRuntimeException("division by zero");
            return PyValue.ToDouble(left) / divisor;
        }
        if (op == "**" && !(left is double || right is double) && PyValue.ToLong(right) < 0)
            return Math.Pow(PyValue.ToDouble(left), PyValue.ToDouble(right));
        if (left is double || right is double)
        {
            var a = PyValue.ToDouble(left);
            var b = PyValue.ToDouble(right);
            return op switch
            {
                "+" => a + b,
                "-" => a - b,
                "*" => a * b,
                "//" => b == 0 ? throw new TemplateRuntimeException("float floor division by zero") : Math.Floor(a / b),
                "%" => b == 0 ? throw new TemplateRuntimeException("float modulo") : a - (b * Math.Floor(a / b)),
                "**" => Math.Pow(a, b),
                _ => throw new TemplateRuntimeException($"unsupported operator '{op}'"),
            };
        }
        var x = PyValue.ToLong(left);
        var y = PyValue.ToLong(right);
        return op switch
        {
            "+" => checked(x + y),
            "-" => checked(x - y),
            "*" => checked(x * y),
            "//" => y == 0 ? throw new TemplateRuntimeException("integer division or modulo by zero") : FloorDiv(x, y),
            "%" => y == 0 ? throw new TemplateRuntimeException("integer division or modulo by zero") : x - (y * FloorDiv(x, y)),
            "**" => IntPow(x, y),
            _ => throw new TemplateRuntimeException($"unsupported operator '{op}'"),
        };
    }

    private static long FloorDiv(long x, long y)
    {
        var q = x / y;
        return (x % y != 0) && ((x < 0) != (y < 0)) ? q - 1 : q;
    }

    private static long IntPow(long x, long y)
    {
        // Bases 0 and ±1 never overflow, so they are the only ones that could loop long; settle them directly.
        if (x is 0 or 1)
            return y == 0 ? 1 : x;
        if (x == -1)
            return y % 2 == 0 ? 1 : -1;
        long result = 1;
        for (var i = 0L; i < y; i++)
            result = checked(result * x);
        return result;
    }

    public static bool Compare(string op, object? left, object? right) => op switch
    {
        "==" => PyValue.AreEqual(left, right),
        "!=" => !PyValue.AreEqual(left, right),
        "<" => PyValue.Compare(left, right, op) < 0,
        "<=" => PyValue.Compare(left, right, op) <= 0,
        ">" => PyValue.Compare(left, right, op) > 0,
        ">=" => PyValue.Compare(left, right, op) >= 0,
        "in" => PyValue.Contains(right, left),
        "not in" => !PyValue.Contains(right, left),
        _ => throw new TemplateRuntimeException($"unsupported comparison '{op}'"),
    };
}
