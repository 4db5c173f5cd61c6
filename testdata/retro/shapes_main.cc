// The retro tests' C++ program: a class of its own derived from the
// library's (its vtable points into both objects), the library's exception
// caught by type, typeinfo compared across objects, std::cout (copied into
// the program), the library's data and its unique static local.
// shapes [KIND...]: exit 2 if a kind is unknown.
#include <iostream>
#include <memory>
#include <typeinfo>
#include "shapes.h"

struct Circle : Shape {
    explicit Circle(double r) : r(r) {}
    double area() const override { return 3 * r * r; }
    std::string name() const override { return "circle"; }
    double r;
};

int main(int argc, char **argv)
{
    int status = 0;
    Circle circle(2);
    std::cout << circle.describe() << (is_square(&circle) ? " is" : " is not")
              << " a square\n";
    for (int i = 1; i < argc; i++) {
        try {
            std::unique_ptr<Shape> shape(make_shape(argv[i], i));
            std::cout << shape->describe() << "; typeid " << typeid(*shape).name()
                      << (typeid(*shape) == typeid(Square) ? " == " : " != ")
                      << typeid(Square).name() << "\n";
        } catch (const ShapeError &e) {
            std::cerr << "shapes: " << e.what() << "\n";
            status = 2;
        }
    }
    std::cout << "made " << shapes_made << ", tally " << shared_tally() << "\n";
    return status;
}
